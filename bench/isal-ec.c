// The same work as bench/ec.ts with no Node in the way: encode and reconstruct (2 lost) on
// 1 MiB stripes with ISA-L, one thread. Prints `RESULT ec.<op>.<k>+<m>.isal <GB/s> GB/s`.
// Built and run by bench/ec.ts:  cc -O2 isal-ec.c -o isal-ec -lisal && ./isal-ec
#include <isa-l/erasure_code.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STRIPE (1 << 20)

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void run(int k, int m, double seconds) {
  int n = k + m, len = STRIPE / k;
  unsigned char *frag[64], *a = malloc(n * k), *tables = malloc(32 * k * m);
  for (int i = 0; i < n; i++) { posix_memalign((void **)&frag[i], 64, len); for (int j = 0; j < len; j++) frag[i][j] = rand(); }
  gf_gen_cauchy1_matrix(a, n, k);
  ec_init_tables(k, m, a + k * k, tables);
  long iters = 0;
  double t0 = now();
  while (now() - t0 < seconds) { ec_encode_data(len, k, m, tables, frag, frag + k); iters++; }
  printf("RESULT ec.encode.%d+%d.isal %.2f GB/s\n", k, m, iters * (double)STRIPE / (now() - t0) / 1e9);
  // Reconstruct data fragments 0 and 1 from the next k fragments.
  unsigned char *b = malloc(k * k), *inv = malloc(k * k), *rows = malloc(2 * k), *dtables = malloc(32 * k * 2);
  for (int r = 0; r < k; r++) memcpy(b + r * k, a + (r + 2) * k, k);
  gf_invert_matrix(b, inv, k);
  memcpy(rows, inv, 2 * k);
  ec_init_tables(k, 2, rows, dtables);
  unsigned char *out[2] = { malloc(len), malloc(len) };
  iters = 0;
  t0 = now();
  while (now() - t0 < seconds) { ec_encode_data(len, k, 2, dtables, frag + 2, out); iters++; }
  printf("RESULT ec.reconstruct.%d+%d.isal %.2f GB/s\n", k, m, iters * (double)STRIPE / (now() - t0) / 1e9);
  if (memcmp(out[0], frag[0], len) != 0 || memcmp(out[1], frag[1], len) != 0) { fprintf(stderr, "reconstruct mismatch\n"); exit(1); }
}

int main(void) {
  int schemas[3][2] = { {4, 2}, {8, 3}, {10, 4} };
  for (int i = 0; i < 3; i++) run(schemas[i][0], schemas[i][1], 1.0);
  return 0;
}
