// Preloaded into a gateway process by the crash tests (`node --import`): SIGKILLs the process the
// moment the proxy reaches the step named by KEYLEASH_FAILPOINT (its Nth time with
// KEYLEASH_FAILPOINT_AFTER=N; the first by default).
import { subscribe } from 'node:diagnostics_channel';

const step = process.env.KEYLEASH_FAILPOINT;
let left = Number(process.env.KEYLEASH_FAILPOINT_AFTER || 1);
if (step) {
  subscribe('keyleash:proxy:step', (m) => {
    if (m.step === step && --left <= 0) process.kill(process.pid, 'SIGKILL');
  });
}
