/* backend.c: the front door to compute backends (backend.h). Every call to a
 * backend goes through here: arguments are checked once, optional entries get
 * their defaults, and each call's wall time is kept. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cilscale/backend.h"
#include "cilscale/clock.h"

struct cs_device {
    const cs_backend_iface *be;
    void *ctx;
    char name[64];
};

struct cs_plan {
    cs_device *dev;
    const cs_graph *g;
    void *impl;
    int64_t arena_size[CS_ARENA_COUNT_];
    int trained_rows; /* rows of the last forward when it was a training one, else 0 */
    cs_plan_timing t;
};

static const char *const arena_names[CS_ARENA_COUNT_] = {
    "params", "grads", "momentum", "buffers", "frozen params", "frozen buffers",
};

int cs_device_open(const cs_backend_iface *be, const char *name, const char *device, cs_device **out,
                   cs_error *err)
{
    *out = NULL;
    if (!be)
        return cs_error_set(err, CS_ERR_ARG, "backend '%s': no interface", name ? name : "?");
    cs_device *d = calloc(1, sizeof *d);
    if (!d)
        return cs_error_set(err, CS_ERR_NOMEM, "out of memory opening backend '%s'", name ? name : "?");
    d->be = be;
    snprintf(d->name, sizeof d->name, "%s", name && *name ? name : "?");
    int rc = be->open(device ? device : "", &d->ctx, err);
    if (rc) {
        free(d);
        return rc;
    }
    *out = d;
    return CS_OK;
}

void cs_device_close(cs_device *d)
{
    if (!d)
        return;
    if (d->ctx)
        d->be->close(d->ctx);
    free(d);
}

void cs_device_describe(const cs_device *d, char *buf, size_t size)
{
    if (size == 0)
        return;
    buf[0] = '\0';
    if (d && d->be->describe)
        d->be->describe(d->ctx, buf, size);
    if (!buf[0])
        snprintf(buf, size, "%s", d ? d->name : "?");
}

const char *cs_device_name(const cs_device *d) { return d ? d->name : "?"; }

int cs_device_can_comm(const cs_device *d) { return d && d->be->set_comm != NULL; }

int cs_plan_prepare(cs_device *d, const cs_graph *g, cs_plan **out, cs_error *err)
{
    *out = NULL;
    if (!d || !g)
        return cs_error_set(err, CS_ERR_ARG, "%s backend: prepare needs a device and a graph", cs_device_name(d));
    char who[96];
    snprintf(who, sizeof who, "%s backend", d->name);
    int rc = cs_graph_check(g, who, err);
    if (rc)
        return rc;
    cs_plan *p = calloc(1, sizeof *p);
    if (!p)
        return cs_error_set(err, CS_ERR_NOMEM, "%s: out of memory preparing the graph", who);
    p->dev = d;
    p->g = g;
    const int64_t np = cs_graph_n_params(g), nb = cs_graph_n_buffers(g);
    const int64_t sizes[CS_ARENA_COUNT_] = {np, np, np, nb, np, nb};
    memcpy(p->arena_size, sizes, sizeof sizes);
    if ((rc = d->be->prepare(d->ctx, g, &p->impl, err))) {
        free(p);
        return rc;
    }
    *out = p;
    return CS_OK;
}

void cs_plan_release(cs_plan *p)
{
    if (!p)
        return;
    if (p->impl)
        p->dev->be->release(p->impl);
    free(p);
}

const cs_graph *cs_plan_graph(const cs_plan *p) { return p ? p->g : NULL; }

static int no_plan(const cs_plan *p, const char *what, cs_error *err)
{
    return p ? CS_OK : cs_error_set(err, CS_ERR_ARG, "backend: %s without a plan", what);
}

static int check_range(const cs_plan *p, cs_arena a, int64_t offset, int64_t count, const void *buf,
                       const char *what, cs_error *err)
{
    int rc = no_plan(p, what, err);
    if (rc)
        return rc;
    const char *who = p->dev->name;
    if ((int)a < 0 || a >= CS_ARENA_COUNT_)
        return cs_error_set(err, CS_ERR_ARG, "%s backend: %s: arena %d is not one of the %d", who, what, (int)a,
                            CS_ARENA_COUNT_);
    if (offset < 0 || count < 0 || offset > p->arena_size[a] - count)
        return cs_error_set(err, CS_ERR_ARG, "%s backend: %s: floats [%lld, %lld) are outside the %s arena's %lld",
                            who, what, (long long)offset, (long long)(offset + count), arena_names[a],
                            (long long)p->arena_size[a]);
    if (count && !buf)
        return cs_error_set(err, CS_ERR_ARG, "%s backend: %s: no buffer", who, what);
    return CS_OK;
}

static int check_rows(const cs_plan *p, int n, const char *what, cs_error *err)
{
    int rc = no_plan(p, what, err);
    if (rc)
        return rc;
    if (n < 1 || n > cs_graph_batch(p->g))
        return cs_error_set(err, CS_ERR_ARG, "%s backend: %s: %d rows, expected 1 to the graph's batch of %d",
                            p->dev->name, what, n, cs_graph_batch(p->g));
    return CS_OK;
}

int cs_plan_write(cs_plan *p, cs_arena a, int64_t offset, int64_t count, const float *src, cs_error *err)
{
    int rc = check_range(p, a, offset, count, src, "write", err);
    if (rc || !count)
        return rc;
    const double t0 = cs_now_s();
    rc = p->dev->be->write(p->impl, a, offset, count, src, err);
    p->t.copy_s += cs_now_s() - t0;
    return rc;
}

int cs_plan_read(cs_plan *p, cs_arena a, int64_t offset, int64_t count, float *dst, cs_error *err)
{
    int rc = check_range(p, a, offset, count, dst, "read", err);
    if (rc || !count)
        return rc;
    const double t0 = cs_now_s();
    rc = p->dev->be->read(p->impl, a, offset, count, dst, err);
    p->t.copy_s += cs_now_s() - t0;
    return rc;
}

int cs_plan_set_input(cs_plan *p, int tensor, const float *src, int n, cs_error *err)
{
    int rc = check_rows(p, n, "set_input", err);
    if (rc)
        return rc;
    const cs_tensor *t = cs_graph_tensor(p->g, tensor);
    if (!t || t->kind != CS_TENSOR_INPUT)
        return cs_error_set(err, CS_ERR_ARG, "%s backend: set_input: tensor %d is not an input of the graph",
                            p->dev->name, tensor);
    if (!src)
        return cs_error_set(err, CS_ERR_ARG, "%s backend: set_input %s: no data", p->dev->name, t->name);
    const double t0 = cs_now_s();
    rc = p->dev->be->set_input(p->impl, tensor, src, n, err);
    p->t.copy_s += cs_now_s() - t0;
    return rc;
}

int cs_plan_read_tensor(cs_plan *p, int tensor, float *dst, int n, cs_error *err)
{
    int rc = check_rows(p, n, "read_tensor", err);
    if (rc)
        return rc;
    const cs_tensor *t = cs_graph_tensor(p->g, tensor);
    if (!t || (t->kind != CS_TENSOR_ACT && t->kind != CS_TENSOR_INPUT))
        return cs_error_set(err, CS_ERR_ARG, "%s backend: read_tensor: tensor %d is not an input or activation",
                            p->dev->name, tensor);
    if (!dst)
        return cs_error_set(err, CS_ERR_ARG, "%s backend: read_tensor %s: no buffer", p->dev->name, t->name);
    const double t0 = cs_now_s();
    rc = p->dev->be->read_tensor(p->impl, tensor, dst, n, err);
    p->t.copy_s += cs_now_s() - t0;
    return rc;
}

static int check_forward(const cs_plan *p, int n, int flags, cs_error *err)
{
    int rc = check_rows(p, n, "forward", err);
    if (rc)
        return rc;
    if (flags & ~(CS_FWD_TRAIN | CS_FWD_FROZEN))
        return cs_error_set(err, CS_ERR_ARG, "%s backend: forward: unknown flags 0x%x", p->dev->name,
                            (unsigned)flags);
    if ((flags & CS_FWD_TRAIN) && (flags & CS_FWD_FROZEN))
        return cs_error_set(err, CS_ERR_ARG,
                            "%s backend: forward: CS_FWD_FROZEN runs the frozen model in eval mode only, not with "
                            "CS_FWD_TRAIN",
                            p->dev->name);
    return CS_OK;
}

int cs_plan_forward(cs_plan *p, int n, int flags, cs_error *err)
{
    int rc = check_forward(p, n, flags, err);
    if (rc)
        return rc;
    p->trained_rows = 0; /* the activations are being overwritten */
    const double t0 = cs_now_s();
    rc = p->dev->be->forward(p->impl, n, flags, err);
    p->t.forward_s += cs_now_s() - t0;
    p->t.forwards++;
    if (rc == CS_OK && (flags & CS_FWD_TRAIN))
        p->trained_rows = n;
    return rc;
}

static int check_backward(const cs_plan *p, int n, cs_error *err)
{
    int rc = check_rows(p, n, "backward", err);
    if (rc)
        return rc;
    if (p->trained_rows != n)
        return cs_error_set(err, CS_ERR_ARG,
                            p->trained_rows ? "%s backend: backward of %d rows after a training forward of %d"
                                            : "%s backend: backward of %d rows: the last forward was not a training "
                                              "one (%d rows), so there is nothing to back-propagate",
                            p->dev->name, n, p->trained_rows);
    return CS_OK;
}

int cs_plan_backward(cs_plan *p, int n, cs_error *err)
{
    int rc = check_backward(p, n, err);
    if (rc)
        return rc;
    const double t0 = cs_now_s();
    rc = p->dev->be->backward(p->impl, n, err);
    p->t.backward_s += cs_now_s() - t0;
    p->t.backwards++;
    return rc;
}

static int check_sgd(const cs_plan *p, const cs_sgd *opt, cs_error *err)
{
    int rc = no_plan(p, "update", err);
    if (rc)
        return rc;
    const char *who = p->dev->name;
    if (!opt)
        return cs_error_set(err, CS_ERR_ARG, "%s backend: update needs SGD settings", who);
    /* torch.optim.SGD refuses the same */
    if (!(opt->lr >= 0) || !(opt->momentum >= 0) || !(opt->weight_decay >= 0) || (opt->nesterov && opt->momentum <= 0))
        return cs_error_set(err, CS_ERR_ARG,
                            "%s backend: SGD lr %g, momentum %g, weight decay %g%s: expected values >= 0 "
                            "(Nesterov needs momentum > 0)",
                            who, opt->lr, opt->momentum, opt->weight_decay, opt->nesterov ? ", Nesterov" : "");
    if (opt->n_frozen < 0 || (opt->n_frozen > 0 && !opt->frozen))
        return cs_error_set(err, CS_ERR_ARG, "%s backend: SGD: %d frozen ranges%s", who, opt->n_frozen,
                            opt->n_frozen > 0 ? " but no array of them" : "");
    const int64_t np = cs_graph_n_params(p->g);
    for (int f = 0; f < opt->n_frozen; f++)
        if (opt->frozen[f][0] < 0 || opt->frozen[f][1] < 0 || opt->frozen[f][0] > np - opt->frozen[f][1])
            return cs_error_set(err, CS_ERR_ARG,
                                "%s backend: SGD: frozen range %d, floats [%lld, %lld), is outside the %lld "
                                "parameters",
                                who, f, (long long)opt->frozen[f][0],
                                (long long)(opt->frozen[f][0] + opt->frozen[f][1]), (long long)np);
    return CS_OK;
}

int cs_plan_update(cs_plan *p, const cs_sgd *opt, cs_error *err)
{
    int rc = check_sgd(p, opt, err);
    if (rc)
        return rc;
    const double t0 = cs_now_s();
    rc = p->dev->be->update(p->impl, opt, err);
    p->t.update_s += cs_now_s() - t0;
    p->t.updates++;
    return rc;
}

int cs_plan_step(cs_plan *p, int n, const cs_sgd *opt, cs_error *err)
{
    int rc = check_forward(p, n, CS_FWD_TRAIN, err);
    if (!rc)
        rc = check_sgd(p, opt, err);
    if (rc)
        return rc;
    if (!p->dev->be->step) {
        if (!(rc = cs_plan_forward(p, n, CS_FWD_TRAIN, err)) && !(rc = cs_plan_backward(p, n, err)))
            rc = cs_plan_update(p, opt, err);
        return rc;
    }
    p->trained_rows = 0;
    const double t0 = cs_now_s();
    rc = p->dev->be->step(p->impl, n, opt, err);
    p->t.step_s += cs_now_s() - t0;
    p->t.steps++;
    if (rc == CS_OK)
        p->trained_rows = n; /* a step leaves a training forward's activations behind */
    return rc;
}

int cs_plan_can_profile(const cs_plan *p) { return p && p->dev->be->profile != NULL; }

int cs_plan_profile(cs_plan *p, char *report, size_t size, cs_error *err)
{
    int rc = no_plan(p, "profile", err);
    if (rc)
        return rc;
    if (!p->dev->be->profile)
        return cs_error_set(err, CS_ERR_ARG, "%s backend: no profiler (--profile needs one)", p->dev->name);
    if (report && size == 0)
        return cs_error_set(err, CS_ERR_ARG, "%s backend: profile: no room for the report", p->dev->name);
    return p->dev->be->profile(p->impl, report, size, err);
}

void cs_plan_timing_get(const cs_plan *p, cs_plan_timing *t)
{
    if (p)
        *t = p->t;
    else
        memset(t, 0, sizeof *t);
}

int cs_plan_can_comm(const cs_plan *p) { return p && p->dev->be->set_comm != NULL; }

int cs_plan_set_comm(cs_plan *p, const cs_comm *comm, cs_error *err)
{
    int rc = no_plan(p, "set_comm", err);
    if (rc)
        return rc;
    const char *who = p->dev->name;
    if (comm && !comm->allreduce)
        return cs_error_set(err, CS_ERR_ARG, "%s backend: set_comm: the comm has no allreduce", who);
    if (comm && !(comm->loss_scale > 0 && comm->loss_scale <= 1))
        return cs_error_set(err, CS_ERR_ARG, "%s backend: set_comm: loss scale %g, expected (0, 1]", who,
                            (double)comm->loss_scale);
    if (!p->dev->be->set_comm)
        return cs_error_set(err, CS_ERR_ARG,
                            comm && comm->sync_bn
                                ? "%s backend: no synchronised batch norm (it cannot exchange statistics inside a "
                                  "pass; the cpu backend can)"
                                : "%s backend: no set_comm entry (a data-parallel run stages its gradients through "
                                  "the host instead)",
                            who);
    return p->dev->be->set_comm(p->impl, comm, err);
}
