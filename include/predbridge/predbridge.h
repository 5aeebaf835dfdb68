/* predbridge/predbridge.h: the whole public API of libpredbridge in one include. */
#ifndef PREDBRIDGE_PREDBRIDGE_H
#define PREDBRIDGE_PREDBRIDGE_H

#include <predbridge/config.h>
#include <predbridge/consumer.h>
#include <predbridge/error.h>
#include <predbridge/export.h>
#include <predbridge/log.h>
#include <predbridge/message.h>
#include <predbridge/stats.h>
#include <predbridge/version.h>

#endif
