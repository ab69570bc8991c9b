/* budget.c: reading a parameter budget as people write it ("1M", "2.5M", "1500k"). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "cilscale/policy.h"

int cs_budget_parse(const char *s, int64_t *out, cs_error *err)
{
    static const char expect[] = "expected a positive whole number of parameters such as 1M, 2.5M, "
                                 "1500k, 3e6 or 1000000";
    if (!s || !*s)
        return cs_error_set(err, CS_ERR_ARG, "budget '': %s", expect);
    errno = 0;
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || errno == ERANGE || isspace((unsigned char)*s))
        return cs_error_set(err, CS_ERR_ARG, "budget '%s': %s", s, expect);
    double mult = 1;
    switch (*end) {
    case 'k': case 'K': mult = 1e3; end++; break;
    case 'm': case 'M': mult = 1e6; end++; break;
    case 'g': case 'G': mult = 1e9; end++; break;
    default: break;
    }
    if (*end != '\0' || !isfinite(v))
        return cs_error_set(err, CS_ERR_ARG, "budget '%s': %s", s, expect);
    double n = v * mult;
    double r = floor(n + 0.5);
    if (!(n > 0) || fabs(n - r) > 1e-9 * (r > 1 ? r : 1) || r > 9e15)
        return cs_error_set(err, CS_ERR_ARG, "budget '%s': %s", s, expect);
    if (r < 1)
        return cs_error_set(err, CS_ERR_ARG, "budget '%s': %s", s, expect);
    *out = (int64_t)r;
    return CS_OK;
}
