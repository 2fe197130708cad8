// Open MPI through dlopen (see haze_mpi.h). Open MPI's handles are the addresses of its
// predefined objects (MPI_COMM_WORLD = &ompi_mpi_comm_world, MPI_FLOAT = &ompi_mpi_float, …),
// found with dlsym, so no mpi.h is needed at build time. The library is opened RTLD_GLOBAL: Open
// MPI's own components (dlopened by it) resolve their symbols against it.
#include "haze_mpi.h"
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

typedef void *handle;
static struct {
    int (*init_thread)(int *, char ***, int, int *);
    int (*comm_rank)(handle, int *);
    int (*comm_size)(handle, int *);
    int (*allreduce)(const void *, void *, int, handle, handle, handle);
    int (*iallreduce)(const void *, void *, int, handle, handle, handle, handle *);
    int (*test)(handle *, int *, void *);
    int (*wait)(handle *, void *);
    int (*bcast)(void *, int, handle, int, handle);
    int (*allgather)(const void *, int, handle, void *, int, handle, handle);
    int (*gatherv)(const void *, int, handle, void *, const int *, const int *, handle, int, handle);
    int (*barrier)(handle);
    int (*finalize)(void);
    int (*abort)(handle, int);
    handle world, float_type, double_type, byte_type, sum, max;
} mpi;

#define IN_PLACE ((void *)1)  // Open MPI's MPI_IN_PLACE
#define THREAD_SERIALIZED 2

#ifdef __APPLE__
#define DEFAULT_LIBRARY "libmpi.40.dylib"  // Homebrew's open-mpi
#else
#define DEFAULT_LIBRARY "libmpi.so.40"
#endif

int haze_mpi_init(const char *library, char *error, long capacity) {
    const char *name = library ? library : DEFAULT_LIBRARY;
    void *lib = dlopen(name, RTLD_NOW | RTLD_GLOBAL);
    if (!lib) {
        snprintf(error, (size_t)capacity, "could not open %s (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi3): %s", name, dlerror());
        return 1;
    }
#define LOAD(field, symbol)                                                                     \
    if (!(*(void **)&mpi.field = dlsym(lib, symbol))) {                                        \
        snprintf(error, (size_t)capacity, "%s has no %s: Haze needs Open MPI 4 or later", name, symbol); \
        return 1;                                                                               \
    }
    LOAD(init_thread, "MPI_Init_thread") LOAD(comm_rank, "MPI_Comm_rank") LOAD(comm_size, "MPI_Comm_size")
    LOAD(allreduce, "MPI_Allreduce") LOAD(iallreduce, "MPI_Iallreduce") LOAD(test, "MPI_Test") LOAD(wait, "MPI_Wait")
    LOAD(bcast, "MPI_Bcast") LOAD(allgather, "MPI_Allgather")
    LOAD(gatherv, "MPI_Gatherv") LOAD(barrier, "MPI_Barrier") LOAD(finalize, "MPI_Finalize") LOAD(abort, "MPI_Abort")
    LOAD(world, "ompi_mpi_comm_world") LOAD(float_type, "ompi_mpi_float") LOAD(double_type, "ompi_mpi_double")
    LOAD(byte_type, "ompi_mpi_byte") LOAD(sum, "ompi_mpi_op_sum") LOAD(max, "ompi_mpi_op_max")
#undef LOAD
    int provided = 0;
    int code = mpi.init_thread(NULL, NULL, THREAD_SERIALIZED, &provided);
    if (code != 0) {
        snprintf(error, (size_t)capacity, "MPI_Init_thread failed (error %d)", code);
        return code;
    }
    if (provided < THREAD_SERIALIZED) {
        snprintf(error, (size_t)capacity, "this MPI provides thread level %d; Haze needs MPI_THREAD_SERIALIZED (2)", provided);
        return 1;
    }
    return 0;
}

int haze_mpi_rank(void) { int r = 0; mpi.comm_rank(mpi.world, &r); return r; }
int haze_mpi_size(void) { int s = 1; mpi.comm_size(mpi.world, &s); return s; }

// In-place allreduce in pieces of at most INT_MAX / 2 elements.
static int allreduce(void *buffer, long count, long element, handle type, handle op) {
    for (long start = 0; start < count; start += INT_MAX / 2) {
        long n = count - start < INT_MAX / 2 ? count - start : INT_MAX / 2;
        int code = mpi.allreduce(IN_PLACE, (char *)buffer + start * element, (int)n, type, op, mpi.world);
        if (code != 0) return code;
    }
    return 0;
}

int haze_mpi_allreduce_sum_float(float *buffer, long count) { return allreduce(buffer, count, 4, mpi.float_type, mpi.sum); }
int haze_mpi_allreduce_sum_double(double *buffer, long count) { return allreduce(buffer, count, 8, mpi.double_type, mpi.sum); }
int haze_mpi_allreduce_max_double(double *buffer, long count) { return allreduce(buffer, count, 8, mpi.double_type, mpi.max); }

// MPI_STATUS_IGNORE is a null pointer in Open MPI.
int haze_mpi_iallreduce_sum_float(float *buffer, long count, void **request) {
    if (count > INT_MAX) return 1;
    return mpi.iallreduce(IN_PLACE, buffer, (int)count, mpi.float_type, mpi.sum, mpi.world, request);
}
int haze_mpi_test(void **request, int *done) { return mpi.test(request, done, NULL); }
int haze_mpi_wait(void **request) { return mpi.wait(request, NULL); }

int haze_mpi_broadcast(void *buffer, long bytes, int root) {
    for (long start = 0; start < bytes; start += INT_MAX / 2) {
        long n = bytes - start < INT_MAX / 2 ? bytes - start : INT_MAX / 2;
        int code = mpi.bcast((char *)buffer + start, (int)n, mpi.byte_type, root, mpi.world);
        if (code != 0) return code;
    }
    return 0;
}

int haze_mpi_allgather(const void *send, void *receive, long bytes) {
    return mpi.allgather(send, (int)bytes, mpi.byte_type, receive, (int)bytes, mpi.byte_type, mpi.world);
}

int haze_mpi_gather_floats(const float *send, long count, float *receive, const int *counts, int root) {
    int size = haze_mpi_size(), displacements[size > 0 ? size : 1];
    long offset = 0;
    for (int r = 0; r < size; r++) { displacements[r] = (int)offset; offset += counts ? counts[r] : 0; }
    return mpi.gatherv(send, (int)count, mpi.float_type, receive, counts, displacements, mpi.float_type, root, mpi.world);
}

int haze_mpi_barrier(void) { return mpi.barrier(mpi.world); }
int haze_mpi_finalize(void) { return mpi.finalize(); }
void haze_mpi_abort(int code) { mpi.abort(mpi.world, code); }
