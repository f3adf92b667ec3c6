/* The classic: prints a greeting and where it ran. */
#include <stdio.h>
#include <stdlib.h>
int main(void) {
  const char *job = getenv("BACALHAU_JOB_ID");
  printf("Hello, World! (job %s)\n", job ? job : "?");
  return 0;
}
