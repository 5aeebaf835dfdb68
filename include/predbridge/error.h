/* predbridge/error.h: the one error enum of libpredbridge, and its messages. */
#ifndef PREDBRIDGE_ERROR_H
#define PREDBRIDGE_ERROR_H

#include <predbridge/export.h>

#ifdef __cplusplus
extern "C" {
#endif

/* X-macro table: name, value, message. PB_OK is 0, errors are negative. */
#define PB_ERRNO_MAP(X)                                                              \
    X(OK, 0, "success")                                                              \
    X(ERR_INVALID_ARG, -1, "invalid argument")                                       \
    X(ERR_NOMEM, -2, "out of memory")                                                \
    X(ERR_CONFIG, -3, "invalid configuration")                                       \
    X(ERR_INSECURE, -4, "setting would weaken security")                             \
    X(ERR_IO, -5, "input/output error")                                              \
    X(ERR_TLS, -6, "TLS handshake or certificate verification failed")              \
    X(ERR_AUTHENTICATION, -7, "authentication failed")                              \
    X(ERR_AUTHORIZATION, -8, "not authorized")                                       \
    X(ERR_PARSE, -9, "malformed prediction")                                         \
    X(ERR_BROKER, -10, "broker error")                                               \
    X(ERR_TIMEOUT, -11, "timed out")                                                 \
    X(ERR_STATE, -12, "operation not valid in the current state")                    \
    X(ERR_TOO_LARGE, -13, "too large")                                               \
    X(ERR_NOT_FOUND, -14, "not found")                                               \
    X(ERR_CERTIFICATE, -15, "local certificate or key is unusable")                  \
    X(ERR_PIN_MISMATCH, -16, "broker public key does not match any configured pin")  \
    X(ERR_STOPPED, -17, "stopped")

typedef enum pb_err {
#define PB_ERR_ENUM_(name, value, msg) PB_##name = value,
    PB_ERRNO_MAP(PB_ERR_ENUM_)
#undef PB_ERR_ENUM_
} pb_err_t;

/* Returns a static, human-readable description of err; never NULL. Thread-safe, non-blocking. */
PB_API const char *pb_strerror(pb_err_t err);

/* Returns the symbolic name of err ("PB_ERR_TLS"); never NULL. Thread-safe, non-blocking. */
PB_API const char *pb_err_name(pb_err_t err);

#ifdef __cplusplus
}
#endif
#endif
