/* The daemon: listeners, connections, batches, HTTP, signals, reload. */
#ifndef MKTD_SERVER_H
#define MKTD_SERVER_H

/* Runs the daemon with the config at path until SIGTERM/SIGINT. Returns the
 * process exit code. */
int server_run(const char *config_path);

#endif
