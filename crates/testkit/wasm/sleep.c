/* sleep MS: sleeps, printing a line before and after. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
int main(int argc, char **argv) {
  long ms = argc > 1 ? atol(argv[1]) : 1000;
  printf("sleeping %ld ms\n", ms);
  fflush(stdout);
  struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };
  nanosleep(&t, NULL);
  printf("done\n");
  return 0;
}
