// The library behind the `vtoe` command, for programs that embed an agent or launch offloaded
// processes themselves (as `vtoe run` does).
export { Agent, type AgentOptions } from './agent/agent.js';
export { offloadEnv, kernelEnv } from './agent/preload-env.js';
export { agentAnswers, runProgram, type RunMode, type RunOptions } from './run.js';
export {
  CONFIG_TABLE, defaultAgentSocket, formatConfig, resolveConfig, resolveConfigWithSources,
  type ConfigEntry, type ResolvedConfig,
} from './config.js';
export { AgentNotRunningError, ConfigError, ProtocolError, VtoeError, VtoeSystemError, errnoName } from './errors.js';
export { libvtoePath } from './paths.js';
