/*
 * smbench._native: the cheap, allocation-free core of the stage probe.
 *
 * 1. A counting NumPy data-memory handler (PyDataMem_SetHandler): every array data
 *    buffer NumPy allocates (malloc/calloc/realloc) adds to a call and a byte counter.
 *    Unlike tracemalloc, which reports live and peak memory, this is cumulative, and
 *    it bypasses NumPy's small-buffer cache, so the same run always counts the same.
 * 2. Stage accounting: stage_end(stage, layer) adds the time and allocations since the
 *    previous edge to a (phase, stage, layer) slot. Doing this in C keeps the probe
 *    from creating Python objects in the hot loop, which would cost time and trigger
 *    the very GC collections we count.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_2_0_API_VERSION
#include <numpy/arrayobject.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

static uint64_t alloc_calls = 0, alloc_bytes = 0;

static void *count_malloc(void *ctx, size_t size) {
    alloc_calls++; alloc_bytes += size;
    return malloc(size ? size : 1);
}
static void *count_calloc(void *ctx, size_t nelem, size_t elsize) {
    alloc_calls++; alloc_bytes += nelem * elsize;
    return calloc(nelem ? nelem : 1, elsize ? elsize : 1);
}
static void *count_realloc(void *ctx, void *ptr, size_t new_size) {
    alloc_calls++; alloc_bytes += new_size;
    return realloc(ptr, new_size ? new_size : 1);
}
static void count_free(void *ctx, void *ptr, size_t size) { free(ptr); }

static PyDataMem_Handler counting_handler = {
    "smbench_counting_allocator", 1,
    {NULL, count_malloc, count_calloc, count_realloc, count_free}
};
static PyObject *previous_handler = NULL;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- stage slots --------------------------------------------------------- */
#define MAX_SLOTS 4096
typedef struct {
    PyObject *stage; long layer; int phase;
    uint64_t calls, total_ns, min_ns, max_ns, bytes, allocs;
} Slot;
static Slot slots[MAX_SLOTS];
static int n_slots = 0, hint = 0, phase = 0;
static uint64_t last_ns = 0, last_calls = 0, last_bytes = 0;

typedef struct { long n_new, n_total; uint64_t ns, bytes, allocs; } Step;
static Step *steps = NULL;
static Py_ssize_t n_steps = 0, cap_steps = 0;
static uint64_t step_ns = 0, step_calls = 0, step_bytes = 0;
static long step_new = 0, step_total = 0;

static int find_slot(PyObject *stage, long layer) {
    for (int k = 0; k < n_slots; k++) {
        int i = (hint + k) % n_slots;
        Slot *s = &slots[i];
        if (s->layer == layer && s->phase == phase &&
            (s->stage == stage || PyUnicode_Compare(s->stage, stage) == 0)) {
            hint = i + 1 < n_slots ? i + 1 : 0;
            return i;
        }
    }
    if (n_slots == MAX_SLOTS) return -1;
    Slot *s = &slots[n_slots];
    Py_INCREF(stage);
    *s = (Slot){stage, layer, phase, 0, 0, UINT64_MAX, 0, 0, 0};
    hint = 0;
    return n_slots++;
}

static PyObject *stage_end(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "stage_end(stage: str, layer: int)");
        return NULL;
    }
    long layer = PyLong_AsLong(args[1]);
    if (layer == -1 && PyErr_Occurred()) return NULL;
    uint64_t t = now_ns();
    int i = find_slot(args[0], layer);
    if (i < 0) { PyErr_SetString(PyExc_RuntimeError, "too many stage slots"); return NULL; }
    Slot *s = &slots[i];
    uint64_t dt = t - last_ns;
    s->calls++; s->total_ns += dt;
    if (dt < s->min_ns) s->min_ns = dt;
    if (dt > s->max_ns) s->max_ns = dt;
    s->bytes += alloc_bytes - last_bytes; s->allocs += alloc_calls - last_calls;
    last_bytes = alloc_bytes; last_calls = alloc_calls;
    last_ns = now_ns();  /* the bookkeeping above is not charged to the next stage */
    Py_RETURN_NONE;
}

static PyObject *step_begin(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) { PyErr_SetString(PyExc_TypeError, "step_begin(n_new, n_total)"); return NULL; }
    step_new = PyLong_AsLong(args[0]);
    step_total = PyLong_AsLong(args[1]);
    if (PyErr_Occurred()) return NULL;
    phase = n_steps == 0 ? 0 : 1;  /* first step: prefill; then decode */
    step_calls = last_calls = alloc_calls; step_bytes = last_bytes = alloc_bytes;
    step_ns = last_ns = now_ns();
    Py_RETURN_NONE;
}

static PyObject *step_end(PyObject *self, PyObject *unused) {
    uint64_t t = now_ns();
    if (n_steps == cap_steps) {
        Py_ssize_t cap = cap_steps ? 2 * cap_steps : 1024;
        Step *grown = realloc(steps, cap * sizeof(Step));
        if (!grown) return PyErr_NoMemory();
        steps = grown; cap_steps = cap;
    }
    steps[n_steps++] = (Step){step_new, step_total, t - step_ns,
                              alloc_bytes - step_bytes, alloc_calls - step_calls};
    Py_RETURN_NONE;
}

static PyObject *reset(PyObject *self, PyObject *unused) {
    for (int i = 0; i < n_slots; i++) Py_CLEAR(slots[i].stage);
    n_slots = 0; hint = 0; phase = 0; n_steps = 0;
    last_ns = now_ns(); last_calls = alloc_calls; last_bytes = alloc_bytes;
    Py_RETURN_NONE;
}

static PyObject *read_stages(PyObject *self, PyObject *unused) {
    PyObject *out = PyList_New(n_slots);
    if (!out) return NULL;
    for (int i = 0; i < n_slots; i++) {
        Slot *s = &slots[i];
        PyObject *row = Py_BuildValue("(iOlKKKKKK)", s->phase, s->stage, s->layer, s->calls,
                                      s->total_ns, s->calls ? s->min_ns : 0, s->max_ns,
                                      s->bytes, s->allocs);
        if (!row) { Py_DECREF(out); return NULL; }
        PyList_SET_ITEM(out, i, row);
    }
    return out;
}

static PyObject *read_steps(PyObject *self, PyObject *unused) {
    PyObject *out = PyList_New(n_steps);
    if (!out) return NULL;
    for (Py_ssize_t i = 0; i < n_steps; i++) {
        Step *s = &steps[i];
        PyObject *row = Py_BuildValue("(llKKK)", s->n_new, s->n_total, s->ns, s->bytes, s->allocs);
        if (!row) { Py_DECREF(out); return NULL; }
        PyList_SET_ITEM(out, i, row);
    }
    return out;
}

static PyObject *alloc_counts(PyObject *self, PyObject *unused) {
    return Py_BuildValue("(KK)", alloc_calls, alloc_bytes);
}

static PyObject *install(PyObject *self, PyObject *unused) {
    if (previous_handler) Py_RETURN_FALSE;  /* already installed */
    PyObject *capsule = PyCapsule_New(&counting_handler, "mem_handler", NULL);
    if (!capsule) return NULL;
    previous_handler = PyDataMem_SetHandler(capsule);
    Py_DECREF(capsule);
    if (!previous_handler) return NULL;
    Py_RETURN_TRUE;
}

static PyObject *uninstall(PyObject *self, PyObject *unused) {
    if (!previous_handler) Py_RETURN_FALSE;
    PyObject *ours = PyDataMem_SetHandler(previous_handler);
    Py_CLEAR(previous_handler);
    if (!ours) return NULL;
    Py_DECREF(ours);
    Py_RETURN_TRUE;
}

static PyObject *installed(PyObject *self, PyObject *unused) {
    return PyBool_FromLong(previous_handler != NULL);
}

static PyMethodDef methods[] = {
    {"stage_end", (PyCFunction)(void (*)(void))stage_end, METH_FASTCALL, "Close the current stage."},
    {"step_begin", (PyCFunction)(void (*)(void))step_begin, METH_FASTCALL, "Open a decode step."},
    {"step_end", step_end, METH_NOARGS, "Close the decode step."},
    {"reset", reset, METH_NOARGS, "Forget all stages and steps."},
    {"read_stages", read_stages, METH_NOARGS,
     "[(phase, stage, layer, calls, total_ns, min_ns, max_ns, alloc_bytes, alloc_calls)]"},
    {"read_steps", read_steps, METH_NOARGS, "[(n_new, n_total, ns, alloc_bytes, alloc_calls)]"},
    {"alloc_counts", alloc_counts, METH_NOARGS, "(calls, bytes) allocated since import"},
    {"install", install, METH_NOARGS, "Route NumPy data allocations through the counter."},
    {"uninstall", uninstall, METH_NOARGS, "Restore the previous NumPy allocator."},
    {"installed", installed, METH_NOARGS, "Whether the counting allocator is active."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native", NULL, -1, methods};

PyMODINIT_FUNC PyInit__native(void) {
    import_array();
    return PyModule_Create(&module);
}
