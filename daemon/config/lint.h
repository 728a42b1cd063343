/* Warnings about a config that is valid but will not do what it says
 * (`mktd check`, and the log at start and reload):
 * - a `when.event` type that no built-in plugin reads and no configured
 *   plugin records (the `order.payed` typo), with the nearest known name;
 * - a cap kind that no configured plugin records;
 * - a condition value that can never match its field's type (a quoted
 *   "10000" against user.orders, or props.amount of order.paid).
 * Each is "FILE:LINE:COL: warning: ..." in warnings. */
#ifndef MKTD_CONFIG_LINT_H
#define MKTD_CONFIG_LINT_H

#include "config/config.h"

void config_lint(const struct config *cfg, struct errs *warnings);
/* The same, logged at level warn (start and reload). */
void config_lint_log(const struct config *cfg);

#endif
