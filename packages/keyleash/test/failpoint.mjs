// Preloaded into a gateway process by the crash tests (`node --import`): SIGKILLs the process the
// moment the proxy reaches the step named by KEYLEASH_FAILPOINT.
import { subscribe } from 'node:diagnostics_channel';

const step = process.env.KEYLEASH_FAILPOINT;
if (step) {
  subscribe('keyleash:proxy:step', (m) => {
    if (m.step === step) process.kill(process.pid, 'SIGKILL');
  });
}
