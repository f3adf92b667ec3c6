/* wordcount OUT FILE...: counts lines, words and bytes of each input file, prints them and
   writes the same table to OUT (a file in a result path). */
#include <ctype.h>
#include <stdio.h>
int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: wordcount OUT FILE...\n"); return 2; }
  FILE *out = fopen(argv[1], "w");
  if (!out) { perror(argv[1]); return 3; }
  for (int i = 2; i < argc; i++) {
    FILE *f = fopen(argv[i], "r");
    if (!f) { perror(argv[i]); return 4; }
    long lines = 0, words = 0, bytes = 0; int c, in_word = 0;
    while ((c = fgetc(f)) != EOF) {
      bytes++;
      if (c == '\n') lines++;
      if (isspace(c)) in_word = 0; else if (!in_word) { in_word = 1; words++; }
    }
    fclose(f);
    printf("%7ld %7ld %7ld %s\n", lines, words, bytes, argv[i]);
    fprintf(out, "%7ld %7ld %7ld %s\n", lines, words, bytes, argv[i]);
  }
  fclose(out);
  return 0;
}
