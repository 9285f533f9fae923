/* vtoe_agent_path.c - the agent's default control socket (vtoe_agent_path.h). */
#include "vtoe_agent_path.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

void vtoe_agent_path_default(char *path, size_t size)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	struct stat st;

	if (xdg && xdg[0] == '/' && stat(xdg, &st) == 0 && S_ISDIR(st.st_mode) &&
	    st.st_uid == getuid() && (size_t)snprintf(path, size, "%s/vtoe/agent.sock", xdg) < size)
		return;
	snprintf(path, size, "/tmp/vtoe-%u/agent.sock", (unsigned int)getuid());
}
