/* Prints each file named on the command line to stdout; like cat(1), a file it cannot open is
   reported on stderr and the rest are still printed (exit status 2 if any failed). */
#include <stdio.h>
int main(int argc, char **argv) {
  int status = 0;
  for (int i = 1; i < argc; i++) {
    FILE *f = fopen(argv[i], "r");
    if (!f) { perror(argv[i]); status = 2; continue; }
    char buf[4096]; size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) fwrite(buf, 1, n, stdout);
    fclose(f);
  }
  return status;
}
