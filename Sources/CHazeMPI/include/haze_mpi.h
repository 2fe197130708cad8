// Open MPI's C API, opened at run time (dlopen of libmpi.so.40, Open MPI 4.x), so that a plain
// `haze` needs no MPI installed and pays nothing for it. Only the calls Haze makes, on
// MPI_COMM_WORLD; every function returns MPI's error code (0: success) unless noted. Not thread
// safe by itself: MPI is initialised with MPI_THREAD_SERIALIZED and the caller serialises calls.
#ifndef HAZE_MPI_H
#define HAZE_MPI_H

/// Loads libmpi (`library`, or libmpi.so.40 when NULL; libmpi.40.dylib on macOS) and calls
/// MPI_Init_thread. On failure returns nonzero and writes a message to `error` (`capacity` bytes).
int haze_mpi_init(const char *library, char *error, long capacity);
int haze_mpi_rank(void);
int haze_mpi_size(void);
/// In-place sums over all ranks (count may exceed INT_MAX: sent in pieces).
int haze_mpi_allreduce_sum_float(float *buffer, long count);
int haze_mpi_allreduce_sum_double(double *buffer, long count);
int haze_mpi_allreduce_max_double(double *buffer, long count);
/// Non-blocking in-place sum (count ≤ INT_MAX): starts it and stores its request in `request`.
/// MPI progresses it inside later MPI calls: haze_mpi_test polls it (sets *done), haze_mpi_wait
/// finishes it.
int haze_mpi_iallreduce_sum_float(float *buffer, long count, void **request);
int haze_mpi_test(void **request, int *done);
int haze_mpi_wait(void **request);
/// `bytes` bytes from rank `root` to every rank.
int haze_mpi_broadcast(void *buffer, long bytes, int root);
/// Every rank's `bytes` bytes, in rank order, into `receive` (size · bytes) on every rank.
int haze_mpi_allgather(const void *send, void *receive, long bytes);
/// Floats of every rank in rank order into `receive` on `root`: counts[r] from rank r.
int haze_mpi_gather_floats(const float *send, long count, float *receive, const int *counts, int root);
int haze_mpi_barrier(void);
int haze_mpi_finalize(void);
/// MPI_Abort on MPI_COMM_WORLD: ends every rank of the job.
void haze_mpi_abort(int code);
#endif
