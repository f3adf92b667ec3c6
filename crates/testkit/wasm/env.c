/* Prints the environment, then exits with $EXIT_CODE (0 if unset). */
#include <stdio.h>
#include <stdlib.h>
extern char **environ;
int main(void) {
  for (char **e = environ; *e; e++) printf("%s\n", *e);
  const char *code = getenv("EXIT_CODE");
  return code ? atoi(code) : 0;
}
