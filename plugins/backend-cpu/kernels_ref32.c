/* kernels_ref32.c: the reference kernels in float (ref_*), the truth the fast kernels are compared with. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "kernels.h"

#define real float
#define REF(name) ref_##name
#include "kernels_ref.inc"
