// OpenBLAS's CBLAS interface; it also declares openblas_set_num_threads,
// openblas_get_num_threads and openblas_get_corename.
#include <cblas.h>
