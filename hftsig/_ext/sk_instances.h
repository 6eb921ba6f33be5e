/* Instantiates the kernel template named by SK_IMPL twice: the SIMD-vector
 * instance (suffix _v, SK_VL paths per block, with SK_SPECIALISE for the
 * hand-specialised low levels) and the scalar one (suffix _s, one path).
 * Include it with SK_IMPL defined, e.g.
 *     #define SK_IMPL "signature_impl.h"
 *     #include "sk_instances.h"
 * No include guard: every template is instantiated once through it. */
#ifndef SK_IMPL
#error "define SK_IMPL (the template header) before including sk_instances.h"
#endif

/* vector instance */
#define SK_T sk_vec
#define SK_L SK_VL
#define SK_NAME(x) x##_v
#define SK_GET(v, l) ((v)[l])
#define SK_SET(v, l, x) ((v)[l] = (x))
#define SK_SPECIALISE
#include SK_IMPL
#undef SK_SPECIALISE
#undef SK_T
#undef SK_L
#undef SK_NAME
#undef SK_GET
#undef SK_SET

/* scalar instance */
#define SK_T double
#define SK_L 1
#define SK_NAME(x) x##_s
#define SK_GET(v, l) (v)
#define SK_SET(v, l, x) ((v) = (x))
#include SK_IMPL
#undef SK_T
#undef SK_L
#undef SK_NAME
#undef SK_GET
#undef SK_SET

#undef SK_IMPL
