/* predbridge/version.h: compile-time and run-time version of libpredbridge. */
#ifndef PREDBRIDGE_VERSION_H
#define PREDBRIDGE_VERSION_H

#include <predbridge/export.h>

#define PB_VERSION_MAJOR 0
#define PB_VERSION_MINOR 1
#define PB_VERSION_PATCH 0
/* 0xMMmmpp00, comparable like librdkafka's RD_KAFKA_VERSION. */
#define PB_VERSION ((PB_VERSION_MAJOR << 24) | (PB_VERSION_MINOR << 16) | (PB_VERSION_PATCH << 8))

#ifdef __cplusplus
extern "C" {
#endif

/* The version of the library actually linked, as PB_VERSION. Thread-safe, non-blocking. */
PB_API int pb_version(void);
/* The same as a string ("0.1.0"); static storage. */
PB_API const char *pb_version_str(void);

#ifdef __cplusplus
}
#endif
#endif
