/* A TFLite external delegate for the tests: it claims no node (so the builtin kernels run
 * everything) and understands four options: log=FILE appends every option it got to FILE,
 * say=TEXT writes TEXT to stderr (as native libraries log), fail=1 refuses to create the
 * delegate, crash=1 dereferences NULL (a native crash). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct TfLiteDelegate {
  void* data_;
  int (*Prepare)(void* context, struct TfLiteDelegate* delegate);
  void* CopyFromBufferHandle;
  void* CopyToBufferHandle;
  void* FreeBufferHandle;
  int64_t flags;
  void* opaque_delegate_builder;
  char reserved[256]; /* room for fields newer TFLite versions append */
} TfLiteDelegate;

static int Prepare(void* context, TfLiteDelegate* delegate) {
  (void)context;
  (void)delegate;
  return 0; /* kTfLiteOk, having replaced nothing */
}

TfLiteDelegate* tflite_plugin_create_delegate(char** keys, char** values, size_t count,
                                              void (*report_error)(const char*)) {
  const char* log = NULL;
  const char* say = NULL;
  int fail = 0, crash = 0;
  for (size_t i = 0; i < count; i++) {
    if (strcmp(keys[i], "log") == 0) log = values[i];
    if (strcmp(keys[i], "say") == 0) say = values[i];
    if (strcmp(keys[i], "fail") == 0) fail = 1;
    if (strcmp(keys[i], "crash") == 0) crash = 1;
  }
  if (log) {
    FILE* file = fopen(log, "a");
    if (file) {
      for (size_t i = 0; i < count; i++) fprintf(file, "%s=%s\n", keys[i], values[i]);
      fclose(file);
    }
  }
  if (say) {
    fprintf(stderr, "%s\n", say);
    fflush(stderr);
  }
  if (crash) {
    volatile int* nowhere = NULL;
    *nowhere = 1;
  }
  if (fail) {
    if (report_error) report_error("test delegate: refused because fail=1");
    return NULL;
  }
  TfLiteDelegate* delegate = calloc(1, sizeof(TfLiteDelegate));
  delegate->Prepare = Prepare;
  return delegate;
}

void tflite_plugin_destroy_delegate(TfLiteDelegate* delegate) { free(delegate); }
