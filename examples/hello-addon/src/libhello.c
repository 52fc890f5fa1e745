/* libhello: the tiny shared library of the torcx example image.
 * VERSION is set by the build (examples/build-example.sh passes -DVERSION="\"REF\""),
 * so two references of the image can be told apart at run time. */
#ifndef VERSION
#define VERSION "unknown"
#endif

const char *hello_version(void)
{
    return VERSION;
}

const char *hello_greeting(void)
{
    return "hello from torcx addon (libhello " VERSION ")";
}
