/* write PATH TEXT: writes TEXT to PATH, then says so on stdout. */
#include <stdio.h>
int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: write PATH TEXT\n"); return 2; }
  FILE *f = fopen(argv[1], "w");
  if (!f) { perror(argv[1]); return 3; }
  fputs(argv[2], f);
  fclose(f);
  printf("wrote %s\n", argv[1]);
  return 0;
}
