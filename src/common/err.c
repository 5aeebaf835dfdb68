/* err.c: messages and names of pb_err_t, from the table in predbridge/error.h. */
#include <predbridge/error.h>

const char *pb_strerror(pb_err_t err) {
    switch (err) {
#define PB_ERR_MSG_(name, value, msg) \
    case PB_##name:                   \
        return msg;
        PB_ERRNO_MAP(PB_ERR_MSG_)
#undef PB_ERR_MSG_
    }
    return "unknown error";
}

const char *pb_err_name(pb_err_t err) {
    switch (err) {
#define PB_ERR_NAME_(name, value, msg) \
    case PB_##name:                    \
        return "PB_" #name;
        PB_ERRNO_MAP(PB_ERR_NAME_)
#undef PB_ERR_NAME_
    }
    return "PB_ERR_UNKNOWN";
}
