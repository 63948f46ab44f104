import { defineSaga } from '../src/define.ts';
import { exploreProduct } from '../src/testing/key-model.ts';
import { explainModelViolation } from '../src/testing/model.ts';
const one = (r: number, c: number) => defineSaga({ name: 'one', version: 1, steps: { a: { worker: 'w', retries: r } }, compensation: { retries: c } });
const cfgs: any[] = [
  { hosts: 1, stepRetries: 0, compensationRetries: 0, duplicates: 0, drops: 0, operatorRetries: 0, operatorResolves: 1 },
  { hosts: 1, stepRetries: 0, compensationRetries: 0, duplicates: 0, drops: 0, operatorRetries: 0, operatorResolves: 2 },
  { hosts: 1, stepRetries: 0, compensationRetries: 0, duplicates: 0, drops: 0, operatorRetries: 0, operatorResolves: 3, transportTimeouts: 1 },
  { hosts: 2, stepRetries: 0, compensationRetries: 0, duplicates: 0, drops: 0, operatorRetries: 0, operatorResolves: 2, leaseExpiries: 1 },
  { hosts: 2, stepRetries: 0, compensationRetries: 0, duplicates: 0, drops: 0, hostCrashes: 1, operatorRetries: 1, operatorResolves: 2 },
];
for (const o of cfgs) {
  const t = Date.now();
  const r = exploreProduct(one, o);
  console.log(r.shape, r.states, r.exhaustive, JSON.stringify(r.coverage), Date.now() - t, 'ms');
  for (const v of r.violations) console.log(explainModelViolation(v));
}
