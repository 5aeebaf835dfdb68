/* predbridge/export.h: symbol visibility for libpredbridge's public API. */
#ifndef PREDBRIDGE_EXPORT_H
#define PREDBRIDGE_EXPORT_H

#if defined(__GNUC__) || defined(__clang__)
#define PB_API __attribute__((visibility("default")))
#else
#define PB_API
#endif

#endif
