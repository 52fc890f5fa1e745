/* hello-addon: prints the greeting of libhello; with an argument, also writes
 * that line to the file named by the argument (the example unit uses
 * /run/hello-addon.out). It finds libhello through RUNPATH $ORIGIN/../lib,
 * so it works only from inside its image tree. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

const char *hello_greeting(void);

int main(int argc, char **argv)
{
    const char *line = hello_greeting();

    if (printf("%s\n", line) < 0 || fflush(stdout) != 0) {
        fprintf(stderr, "hello-addon: writing to stdout: %s\n", strerror(errno));
        return 1;
    }
    if (argc > 1) {
        FILE *f = fopen(argv[1], "w");
        if (f == NULL) {
            fprintf(stderr, "hello-addon: %s: %s\n", argv[1], strerror(errno));
            return 1;
        }
        if (fprintf(f, "%s\n", line) < 0) {
            fprintf(stderr, "hello-addon: %s: %s\n", argv[1], strerror(errno));
            fclose(f);
            return 1;
        }
        if (fclose(f) != 0) {
            fprintf(stderr, "hello-addon: %s: %s\n", argv[1], strerror(errno));
            return 1;
        }
    }
    return 0;
}
