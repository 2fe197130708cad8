// The worker pool behind Parallel.forEach: threads that wait for work spinning for a moment
// before they sleep, so that the back-to-back parallel loops of a training step (about a thousand
// per step, many of them tens of microseconds long) do not each pay a thread wake-up. libdispatch's
// concurrentPerform, used before, put its worker to sleep between loops: two 14 µs halves took
// 43 µs in parallel against 27 µs on one thread (2-core Intel Xeon, 2026-12-06).
//
// One loop runs at a time. The caller publishes a job (function, context, number of chunks) by
// bumping `generation`; the caller and the workers take chunks with an atomic counter until none is
// left, and the caller spins until every chunk has finished. A worker that has seen no new job for
// HAZE_SPIN_NS sleeps on a condition variable; publishing wakes sleepers. A loop nested inside a
// chunk returns 0 (the caller runs it on its own thread); one started while another thread's loop
// runs returns −1 (the caller runs it some other way), so nothing waits on itself.
#include "haze_kernels.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define HAZE_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define HAZE_PAUSE() __asm__ __volatile__("yield")
#else
#define HAZE_PAUSE() ((void)0)
#endif

enum { HAZE_MAX_WORKERS = 255 };
static const long HAZE_SPIN_NS = 200 * 1000;

static struct {
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    atomic_long generation;   // bumped once per job
    atomic_int busy;          // 1 while a job is being run (the pool's lock)
    // The job's generation (low 24 bits), its number of chunks (20 bits) and the next chunk to take
    // (20 bits) in one word: a worker still leaving one job cannot take a chunk of the next.
    atomic_ulong next;
    atomic_long finished;     // chunks done
    atomic_long participants; // workers with index < participants join the job (read by workers between jobs)
    haze_chunk_fn fn;
    void *context;
    int sleeping;             // workers waiting on `wake` (under mutex)
    long workers;             // started so far (under mutex)
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};

enum { CHUNK_BITS = 20 };
static const unsigned long CHUNK_MASK = (1UL << CHUNK_BITS) - 1;

static unsigned long job_word(long generation, long chunks) {
    return ((unsigned long)(generation & 0xffffff) << (2 * CHUNK_BITS)) | ((unsigned long)chunks << CHUNK_BITS);
}

static _Thread_local int inside_job;

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long)t.tv_sec * 1000000000L + t.tv_nsec;
}

/// Takes and runs chunks of job `generation` until none is left (or that job has ended). The job's
/// fields stay as they are while one of its chunks is unfinished: the caller waits for all of them.
static void run_chunks(long generation) {
    unsigned long tag = (unsigned long)(generation & 0xffffff) << (2 * CHUNK_BITS);
    inside_job = 1;
    for (;;) {
        unsigned long taken = atomic_load_explicit(&pool.next, memory_order_acquire);
        long chunk = (long)(taken & CHUNK_MASK), chunks = (long)((taken >> CHUNK_BITS) & CHUNK_MASK);
        if ((taken & ~((1UL << (2 * CHUNK_BITS)) - 1)) != tag || chunk >= chunks) break;
        if (!atomic_compare_exchange_weak_explicit(&pool.next, &taken, taken + 1, memory_order_acquire, memory_order_relaxed)) continue;
        pool.fn(pool.context, chunk);
        atomic_fetch_add_explicit(&pool.finished, 1, memory_order_release);
    }
    inside_job = 0;
}

static void *worker_main(void *argument) {
    long index = (long)argument;
    long seen = atomic_load_explicit(&pool.generation, memory_order_acquire);
    for (;;) {
        long start = now_ns(), spins = 0, current;
        while ((current = atomic_load_explicit(&pool.generation, memory_order_acquire)) == seen) {
            HAZE_PAUSE();
            if (++spins % 256 == 0 && now_ns() - start > HAZE_SPIN_NS) {
                pthread_mutex_lock(&pool.mutex);
                while ((current = atomic_load_explicit(&pool.generation, memory_order_acquire)) == seen) {
                    pool.sleeping++;
                    pthread_cond_wait(&pool.wake, &pool.mutex);
                    pool.sleeping--;
                }
                pthread_mutex_unlock(&pool.mutex);
                break;
            }
        }
        seen = current;
        if (index < atomic_load_explicit(&pool.participants, memory_order_relaxed)) run_chunks(current);
    }
    return NULL;
}

int haze_parallel_run(long chunks, long threads, haze_chunk_fn fn, void *context) {
    if (inside_job || threads < 2 || chunks < 2 || chunks > (long)CHUNK_MASK) return 0;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&pool.busy, &expected, 1)) return -1;
    long wanted = threads - 1 < HAZE_MAX_WORKERS ? threads - 1 : HAZE_MAX_WORKERS;
    pthread_mutex_lock(&pool.mutex);
    while (pool.workers < wanted) {
        pthread_t thread;
        pthread_attr_t attributes;
        pthread_attr_init(&attributes);
        pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
        int failed = pthread_create(&thread, &attributes, worker_main, (void *)pool.workers);
        pthread_attr_destroy(&attributes);
        if (failed) break;
        pool.workers++;
    }
    long participants = pool.workers < wanted ? pool.workers : wanted;
    pthread_mutex_unlock(&pool.mutex);

    long generation = atomic_load_explicit(&pool.generation, memory_order_relaxed) + 1;
    pool.fn = fn;
    pool.context = context;
    atomic_store_explicit(&pool.participants, participants, memory_order_relaxed);
    atomic_store_explicit(&pool.finished, 0, memory_order_relaxed);
    // Publishes the fields above to workers that read `next` or `generation`.
    atomic_store_explicit(&pool.next, job_word(generation, chunks), memory_order_release);
    atomic_store_explicit(&pool.generation, generation, memory_order_seq_cst);
    pthread_mutex_lock(&pool.mutex);
    if (pool.sleeping > 0) pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.mutex);

    run_chunks(generation);
    while (atomic_load_explicit(&pool.finished, memory_order_acquire) < chunks) HAZE_PAUSE();
    atomic_store_explicit(&pool.busy, 0, memory_order_release);
    return 1;
}
