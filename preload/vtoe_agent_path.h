/* vtoe_agent_path.h - where the agent's control socket is when VTOE_AGENT_SOCKET does not say:
 * shared by the shim and the launcher, and decided as the agent decides (src/config.ts). */
#ifndef VTOE_AGENT_PATH_H
#define VTOE_AGENT_PATH_H

#include <stddef.h>

/* $XDG_RUNTIME_DIR/vtoe/agent.sock when that is a directory of this user, else
 * /tmp/vtoe-<uid>/agent.sock. */
void vtoe_agent_path_default(char *path, size_t size);

#endif
