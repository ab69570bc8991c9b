/* elf.c: is a file a complete shared object for this machine? Checked before
 * dlopen, which maps a truncated file and dies of SIGBUS on touching a page
 * past its end (registry.h, cs_elf_check). */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cilscale/registry.h"

#if defined(__x86_64__)
#define OWN_MACHINE EM_X86_64
#elif defined(__aarch64__)
#define OWN_MACHINE EM_AARCH64
#elif defined(__i386__)
#define OWN_MACHINE EM_386
#elif defined(__arm__)
#define OWN_MACHINE EM_ARM
#elif defined(__riscv)
#define OWN_MACHINE EM_RISCV
#elif defined(__powerpc64__)
#define OWN_MACHINE EM_PPC64
#elif defined(__s390x__)
#define OWN_MACHINE EM_S390
#endif

#if __SIZEOF_POINTER__ == 8
#define OWN_CLASS ELFCLASS64
#else
#define OWN_CLASS ELFCLASS32
#endif

/* [off, off + len) lies within a file of size bytes (no overflow). */
static int within(uint64_t off, uint64_t len, uint64_t size) { return off <= size && len <= size - off; }

int cs_elf_check(const char *path, cs_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cs_error_set(err, CS_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    struct stat st;
    ElfW(Ehdr) eh;
    int rc = CS_OK;
    if (fstat(fd, &st) != 0) {
        rc = cs_error_set(err, CS_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
        goto out;
    }
    const uint64_t size = (uint64_t)st.st_size;
    memset(&eh, 0, sizeof eh);
    ssize_t got = pread(fd, &eh, sizeof eh, 0);
    if (got >= SELFMAG && memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) {
        rc = cs_error_set(err, CS_ERR, "%s: not a shared object (no ELF magic)", path);
        goto out;
    }
    if (size < sizeof eh || got != (ssize_t)sizeof eh) {
        rc = cs_error_set(err, CS_ERR, "%s: not a shared object (%llu bytes, too short for an ELF header)", path,
                          (unsigned long long)size);
        goto out;
    }
    const union { uint16_t u; uint8_t b[2]; } probe = {1};
    const int own_data = probe.b[0] == 1 ? ELFDATA2LSB : ELFDATA2MSB;
    if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) {
        rc = cs_error_set(err, CS_ERR, "%s: not a shared object (no ELF magic)", path);
    } else if (eh.e_ident[EI_CLASS] != OWN_CLASS || eh.e_ident[EI_DATA] != own_data) {
        rc = cs_error_set(err, CS_ERR, "%s: built for another machine (%d-bit, %s-endian ELF)", path,
                          eh.e_ident[EI_CLASS] == ELFCLASS64 ? 64 : 32,
                          eh.e_ident[EI_DATA] == ELFDATA2LSB ? "little" : "big");
    } else if (eh.e_type != ET_DYN) {
        rc = cs_error_set(err, CS_ERR, "%s: not a shared object (ELF type %u)", path, (unsigned)eh.e_type);
#ifdef OWN_MACHINE
    } else if (eh.e_machine != OWN_MACHINE) {
        rc = cs_error_set(err, CS_ERR, "%s: built for another machine (ELF machine %u, this one %u)", path,
                          (unsigned)eh.e_machine, (unsigned)OWN_MACHINE);
#endif
    } else if (eh.e_phentsize != sizeof(ElfW(Phdr)) || eh.e_phnum == 0 ||
               !within(eh.e_phoff, (uint64_t)eh.e_phnum * sizeof(ElfW(Phdr)), size)) {
        rc = cs_error_set(err, CS_ERR, "%s: truncated or damaged (its program headers are not within its %llu bytes)",
                          path, (unsigned long long)size);
    }
    for (unsigned i = 0; rc == CS_OK && i < eh.e_phnum; i++) {
        ElfW(Phdr) ph;
        if (pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + (uint64_t)i * sizeof ph)) != (ssize_t)sizeof ph) {
            rc = cs_error_set(err, CS_ERR_IO, "%s: cannot read its program headers", path);
        } else if ((ph.p_type == PT_LOAD || ph.p_type == PT_DYNAMIC) && !within(ph.p_offset, ph.p_filesz, size)) {
            rc = cs_error_set(err, CS_ERR, "%s: truncated (a %s segment ends at byte %llu of a %llu-byte file)", path,
                              ph.p_type == PT_LOAD ? "loadable" : "dynamic",
                              (unsigned long long)(ph.p_offset + ph.p_filesz), (unsigned long long)size);
        }
    }
    if (rc == CS_OK && eh.e_shoff && !within(eh.e_shoff, (uint64_t)eh.e_shnum * eh.e_shentsize, size))
        rc = cs_error_set(err, CS_ERR, "%s: truncated (its section headers end past its %llu bytes)", path,
                          (unsigned long long)size);
out:
    close(fd);
    return rc;
}
