/* A flush of cyvcf2 records' calls → the Arrow buffers of bronze.vcf_genotypes' call
 * columns, in two passes over htslib's packed FORMAT block and without the GIL.
 *
 * cyvcf2 decodes a FORMAT field one record at a time into a fresh numpy matrix (four
 * calls and ~40 µs a record at 500 samples, under the GIL); then numpy turns a flush of
 * those matrices into Arrow columns. Here the raw record stays alive until the flush and
 * its sample block (`bcf1_t.indiv`, laid out as the BCF2 specification's typed values)
 * is read directly. The output matches the Python path value for value
 * (tests/test_genotype_decoder.py compares the two on every VCF in shared/data/vcf).
 *
 * What this relies on, checked by the Python side before any record comes here:
 *  - cyvcf2.Variant's first field is its `bcf1_t *` (cyvcf2 0.34, `ACCEPTED_CYVCF2`);
 *  - the leading fields of htslib's bcf1_t (stable since htslib 1.10), mirrored below;
 *  - a little-endian machine (BCF's byte order).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct { size_t l, m; char *s; } kstring;

typedef struct {            /* htslib's bcf1_t, up to the sample block */
    int64_t pos, rlen;
    int32_t rid;
    float qual;
    uint32_t n_info : 16, n_allele : 16;
    uint32_t n_fmt : 8, n_sample : 24;
    kstring shared, indiv;
} bcf1_head;

typedef struct { PyObject_HEAD bcf1_head *b; } variant_object;  /* cyvcf2.Variant */

enum { BT_NULL = 0, BT_INT8 = 1, BT_INT16 = 2, BT_INT32 = 3, BT_FLOAT = 5, BT_CHAR = 7 };
enum { GT, DP, GQ, AD, WANTED };
#define MISSING32 INT32_MIN
#define END32 (INT32_MIN + 1)
/* GT codes as in vcf.py's _gt_codes: allele+2 as base-64 digits, then the phase bit */
#define GT_BASE 64
#define GT_DIGITS 10

typedef struct { const uint8_t *data; int type, size; int32_t count; } field;

static int type_size(int type) {
    switch (type) {
    case BT_NULL: return 0;
    case BT_INT8: case BT_CHAR: return 1;
    case BT_INT16: return 2;
    case BT_INT32: case BT_FLOAT: return 4;
    default: return -1;
    }
}

/* A BCF typed integer (one value): bytes read, or -1. */
static int typed_int(const uint8_t *p, const uint8_t *end, int32_t *out) {
    if (p >= end || (p[0] >> 4) != 1) return -1;
    int type = p[0] & 0xf, size = type_size(type);
    if ((type != BT_INT8 && type != BT_INT16 && type != BT_INT32) || p + 1 + size > end) return -1;
    if (size == 1) *out = (int8_t)p[1];
    else if (size == 2) { int16_t v; memcpy(&v, p + 1, 2); *out = v; }
    else memcpy(out, p + 1, 4);
    return 1 + size;
}

/* A value as htslib's bcf_get_format_values gives it: int32, with int8/int16 sentinels
 * widened to the int32 ones. */
static inline int32_t value32(const uint8_t *p, int type) {
    if (type == BT_INT8) {
        int8_t v = (int8_t)*p;
        return v == INT8_MIN ? MISSING32 : v == INT8_MIN + 1 ? END32 : v;
    }
    if (type == BT_INT16) {
        int16_t v; memcpy(&v, p, 2);
        return v == INT16_MIN ? MISSING32 : v == INT16_MIN + 1 ? END32 : v;
    }
    int32_t v; memcpy(&v, p, 4);
    return v;
}

/* A DP, GQ or AD value as the numpy path reads it: integers as above; floats (GQ is
 * often declared Float) truncated toward zero, NaN (missing, and for floats vector end
 * too) and values out of int64's range null. Negative means null; `*end` is set at an
 * integer vector's end. */
static inline int64_t number(const uint8_t *p, int type, int *end) {
    if (type == BT_FLOAT) {
        float f; memcpy(&f, p, 4);
        return f == f && f > -9.2e18f && f < 9.2e18f ? (int64_t)f : MISSING32;
    }
    int32_t v = value32(p, type);
    *end = v == END32;
    return v;
}

/* Walk a record's sample block: every field's key id and typed vector, the wanted ones
 * (by key id) kept in `out`. 0 on success, -1 when the block is malformed. */
typedef int (*field_visitor)(void *state, int32_t key, const field *f);

static int walk(const bcf1_head *b, field_visitor visit, void *state) {
    const uint8_t *p = (const uint8_t *)b->indiv.s, *end = p + b->indiv.l;
    for (unsigned i = 0; i < b->n_fmt; i++) {
        int32_t key, count;
        int used = typed_int(p, end, &key);
        if (used < 0 || p + used >= end) return -1;
        p += used;
        field f = { NULL, p[0] & 0xf, type_size(p[0] & 0xf), p[0] >> 4 };
        p += 1;
        if (f.count == 15) {
            used = typed_int(p, end, &count);
            if (used < 0 || count < 0) return -1;
            f.count = count;
            p += used;
        }
        if (f.size < 0) return -1;
        size_t bytes = (size_t)b->n_sample * (size_t)f.count * (size_t)f.size;
        if ((size_t)(end - p) < bytes) return -1;
        f.data = p;
        p += bytes;
        if (visit(state, key, &f) < 0) return -1;
    }
    return 0;
}

static bcf1_head *record_of(PyObject *variant) {
    bcf1_head *b = ((variant_object *)variant)->b;
    if (b == NULL) PyErr_SetString(PyExc_ValueError, "a cyvcf2 record without its htslib record");
    return b;
}

/* ------------------------------------------------------------------ layout(record) */

typedef struct { PyObject *list; } layout_state;

static int add_layout(void *state, int32_t key, const field *f) {
    /* A field of no values decodes like one of an unknown type: left to the Python path. */
    int type = f->count > 0 ? f->type : 15;
    PyObject *code = PyLong_FromLong(((long)key << 4) | type);
    if (code == NULL) return -1;
    int r = PyList_Append(((layout_state *)state)->list, code);
    Py_DECREF(code);
    return r;
}

static PyObject *layout(PyObject *Py_UNUSED(self), PyObject *variant) {
    bcf1_head *b = record_of(variant);
    if (b == NULL) return NULL;
    layout_state st = { PyList_New(0) };
    if (st.list == NULL) return NULL;
    if (walk(b, add_layout, &st) < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "malformed BCF sample block");
        Py_DECREF(st.list);
        return NULL;
    }
    PyObject *out = PyList_AsTuple(st.list);
    Py_DECREF(st.list);
    return out;
}

static PyObject *head(PyObject *Py_UNUSED(self), PyObject *variant) {
    bcf1_head *b = record_of(variant);
    if (b == NULL) return NULL;
    return Py_BuildValue("(Lii)", (long long)b->pos, (int)b->n_sample, (int)b->n_allele);
}

/* ------------------------------------------------------------------ decode(records, ...) */

typedef struct { int32_t ids[WANTED]; field found[WANTED]; } wanted_state;

static int keep_wanted(void *state, int32_t key, const field *f) {
    wanted_state *st = state;
    for (int k = 0; k < WANTED; k++)
        if (st->ids[k] == key && key >= 0) {
            int integer = f->type == BT_INT8 || f->type == BT_INT16 || f->type == BT_INT32;
            if (!integer && (k == GT || f->type != BT_FLOAT)) return -1;
            if (f->count < 1) return -1;
            st->found[k] = *f;
        }
    return 0;
}

static inline void set_bit(uint8_t *bits, size_t i) { bits[i >> 3] |= (uint8_t)(1u << (i & 7)); }

typedef struct {              /* one list<int64> column being filled */
    int32_t *offsets;
    int64_t *values;
    uint8_t *item_valid, *row_valid;
    size_t n;                 /* values so far */
} list_out;

static inline void list_push(list_out *o, int64_t v) {
    if (v >= 0) set_bit(o->item_valid, o->n);
    o->values[o->n++] = v;
}

static inline void list_close(list_out *o, size_t row) {
    o->offsets[row + 1] = (int32_t)o->n;
    if ((size_t)o->offsets[row] != o->n) set_bit(o->row_valid, row);
}

/* GT of one record's samples, rows from `row0`: cyvcf2's genotype.array() per allele
 * (vector end -2, else (raw>>1)-1 as int16), the phase from the second allele (none for
 * a call of one allele), the code of vcf.py's _gt_codes over the flush's widest GT. */
static void fill_gt(const field *f, int n, int32_t width, size_t row0, list_out *alleles,
                    int64_t *codes, uint8_t *phased, int64_t *alt, int32_t *raw, int16_t *al,
                    int *codes_fit) {
    int32_t w = f->count, digits = width < GT_DIGITS ? width : GT_DIGITS;
    for (int32_t j = w; j < width; j++) al[j] = -2;
    for (int s = 0; s < n; s++) {
        size_t row = row0 + s;
        const uint8_t *p = f->data + (size_t)s * w * f->size;
        int ended = 0, a_count = 0;
        for (int32_t j = 0; j < w; j++) {
            raw[j] = ended ? END32 : value32(p + (size_t)j * f->size, f->type);
            ended = raw[j] == END32;
            al[j] = ended ? -2 : (int16_t)((raw[j] >> 1) - 1);
            if (!ended) {
                list_push(alleles, al[j]);
                a_count += al[j] > 0;
                if (al[j] >= GT_BASE - 2) *codes_fit = 0;
            }
        }
        list_close(alleles, row);
        int ph = w > 1 && raw[1] != END32 && (raw[1] & 1);
        if (ph) set_bit(phased, row);
        alt[row] = a_count;
        int64_t code = 0;
        for (int32_t j = digits - 1; j >= 0; j--) code = code * GT_BASE + al[j] + 2;
        codes[row] = code * 2 + ph;
    }
}

/* DP or GQ: each sample's first value; negative (missing, vector end) is null. */
static void fill_first(const field *f, int n, size_t row0, int64_t *out, uint8_t *valid) {
    int end;
    for (int s = 0; s < n; s++) {
        int64_t v = f->data ? number(f->data + (size_t)s * f->count * f->size, f->type, &end) : MISSING32;
        out[row0 + s] = v;
        if (v >= 0) set_bit(valid, row0 + s);
    }
}

/* AD: each sample's values up to the vector end; negative items null, no values null. */
static void fill_list(const field *f, int n, size_t row0, list_out *o) {
    int end = 0;
    for (int s = 0; s < n; s++) {
        if (f->data)
            for (int32_t j = 0; j < f->count; j++) {
                int64_t v = number(f->data + ((size_t)s * f->count + j) * f->size, f->type, &end);
                if (end) break;
                list_push(o, v);
            }
        list_close(o, row0 + s);
    }
}

/* An output: a bytearray's buffer, sized from the first pass (zeroed for bitmaps). */
static PyObject *buffer(size_t bytes, void **data, int zero) {
    PyObject *b = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)(bytes ? bytes : 1));
    if (b == NULL) return NULL;
    *data = PyByteArray_AS_STRING(b);
    if (zero) memset(*data, 0, bytes ? bytes : 1);
    return b;
}

static PyObject *decode(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *records;
    int n;
    wanted_state proto;
    if (!PyArg_ParseTuple(args, "O!i(iiii)", &PyList_Type, &records, &n,
                          &proto.ids[GT], &proto.ids[DP], &proto.ids[GQ], &proto.ids[AD]))
        return NULL;
    Py_ssize_t sites = PyList_GET_SIZE(records);
    size_t rows = (size_t)sites * (size_t)n;
    bcf1_head **recs = PyMem_Malloc(sizeof(bcf1_head *) * (sites ? sites : 1));
    wanted_state *fields = PyMem_Malloc(sizeof(wanted_state) * (sites ? sites : 1));
    if (recs == NULL || fields == NULL) {
        PyMem_Free(recs); PyMem_Free(fields);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < sites; i++) {
        recs[i] = record_of(PyList_GET_ITEM(records, i));
        if (recs[i] == NULL) { PyMem_Free(recs); PyMem_Free(fields); return NULL; }
    }

    /* First pass: find the fields, check them, size the outputs. */
    int bad = 0;
    int32_t width = 0;             /* the widest GT in the flush */
    size_t gt_values = 0, ad_values = 0;  /* at most: each sample's vector, unpadded */
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < sites && !bad; i++) {
        fields[i] = proto;
        memset(fields[i].found, 0, sizeof fields[i].found);
        if ((int)recs[i]->n_sample != n || walk(recs[i], keep_wanted, &fields[i]) < 0) bad = 1;
        field *gt = &fields[i].found[GT], *ad = &fields[i].found[AD];
        if (gt->data && gt->count > width) width = gt->count;
        if (gt->data) gt_values += (size_t)n * (size_t)gt->count;
        if (ad->data) ad_values += (size_t)n * (size_t)ad->count;
    }
    Py_END_ALLOW_THREADS
    if (bad) {
        PyMem_Free(recs); PyMem_Free(fields);
        PyErr_SetString(PyExc_ValueError, "a record's FORMAT block is not what the Python side checked");
        return NULL;
    }

    void *p_codes, *p_phased, *p_alt, *p_dp, *p_dpv, *p_gq, *p_gqv;
    void *p_aoff, *p_aval, *p_aiv, *p_arv, *p_doff, *p_dval, *p_div, *p_drv;
    size_t bits = (rows + 7) / 8;
    size_t allele_values = gt_values;  /* not rows * width: one odd ploidy must not size them all */
    PyObject *o_codes = buffer(rows * 8, &p_codes, 0), *o_phased = buffer(bits, &p_phased, 1),
             *o_alt = buffer(rows * 8, &p_alt, 0),
             *o_dp = buffer(rows * 8, &p_dp, 0), *o_dpv = buffer(bits, &p_dpv, 1),
             *o_gq = buffer(rows * 8, &p_gq, 0), *o_gqv = buffer(bits, &p_gqv, 1),
             *o_aoff = buffer((rows + 1) * 4, &p_aoff, 0), *o_aval = buffer(allele_values * 8, &p_aval, 0),
             *o_aiv = buffer((allele_values + 7) / 8, &p_aiv, 1), *o_arv = buffer(bits, &p_arv, 1),
             *o_doff = buffer((rows + 1) * 4, &p_doff, 0), *o_dval = buffer(ad_values * 8, &p_dval, 0),
             *o_div = buffer((ad_values + 7) / 8, &p_div, 1), *o_drv = buffer(bits, &p_drv, 1);
    PyObject *all[] = { o_codes, o_phased, o_alt, o_dp, o_dpv, o_gq, o_gqv,
                        o_aoff, o_aval, o_aiv, o_arv, o_doff, o_dval, o_div, o_drv };
    PyObject *result = NULL;
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++)
        if (all[k] == NULL) goto done;

    int64_t *codes = p_codes, *alt = p_alt, *dp = p_dp, *gq = p_gq;
    uint8_t *phased = p_phased, *dpv = p_dpv, *gqv = p_gqv;
    list_out alleles = { p_aoff, p_aval, p_aiv, p_arv, 0 }, ads = { p_doff, p_dval, p_div, p_drv, 0 };
    alleles.offsets[0] = ads.offsets[0] = 0;
    int codes_fit = width <= GT_DIGITS;

    int32_t *raw = PyMem_RawMalloc(sizeof(int32_t) * (width + 2));
    int16_t *al = PyMem_RawMalloc(sizeof(int16_t) * (width + 2));
    if (raw == NULL || al == NULL) {
        PyMem_RawFree(raw); PyMem_RawFree(al);
        PyErr_NoMemory();
        goto done;
    }

    /* Second pass: fill, a record's field at a time. */
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < sites; i++) {
        const field *f = fields[i].found;
        size_t row0 = (size_t)i * n;
        if (f[GT].data)
            fill_gt(&f[GT], n, width, row0, &alleles, codes, phased, alt, raw, al, &codes_fit);
        else
            for (int s = 0; s < n; s++) {
                codes[row0 + s] = -1;
                alt[row0 + s] = 0;
                alleles.offsets[row0 + s + 1] = (int32_t)alleles.n;
            }
        fill_first(&f[DP], n, row0, dp, dpv);
        fill_first(&f[GQ], n, row0, gq, gqv);
        fill_list(&f[AD], n, row0, &ads);
    }
    Py_END_ALLOW_THREADS
    PyMem_RawFree(raw);
    PyMem_RawFree(al);
    if (PyByteArray_Resize(o_aval, (Py_ssize_t)(alleles.n ? alleles.n * 8 : 1)) < 0 ||
        PyByteArray_Resize(o_dval, (Py_ssize_t)(ads.n ? ads.n * 8 : 1)) < 0)
        goto done;
    result = Py_BuildValue(
        "{s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:(OOOOn),s:(OOOOn)}",
        "codes", o_codes, "codes_fit", codes_fit ? Py_True : Py_False, "phased", o_phased, "alt_count", o_alt,
        "dp", o_dp, "dp_valid", o_dpv, "gq", o_gq, "gq_valid", o_gqv,
        "alleles", o_aoff, o_aval, o_aiv, o_arv, (Py_ssize_t)alleles.n,
        "ad", o_doff, o_dval, o_div, o_drv, (Py_ssize_t)ads.n);
done:
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) Py_XDECREF(all[k]);
    PyMem_Free(recs);
    PyMem_Free(fields);
    return result;
}

static PyMethodDef methods[] = {
    {"layout", layout, METH_O,
     "layout(record) -> tuple: each FORMAT field's header key id << 4 | BCF type, in order."},
    {"head", head, METH_O, "head(record) -> (pos0, n_sample, n_allele), for the layout check."},
    {"decode", decode, METH_VARARGS,
     "decode(records, n_samples, (gt_id, dp_id, gq_id, ad_id)) -> dict of Arrow buffers."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_calls", "Genotype calls of cyvcf2 records straight into Arrow buffers.",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__calls(void) { return PyModule_Create(&module); }
