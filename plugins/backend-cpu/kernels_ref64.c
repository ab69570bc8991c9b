/* kernels_ref64.c: the reference kernels in double (ref64_*), for finite-difference checks of the backward. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "kernels.h"

#define real double
#define REF(name) ref64_##name
#include "kernels_ref.inc"
