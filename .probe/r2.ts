import { defineSaga } from '../src/define.ts';
import { exploreProduct } from '../src/testing/key-model.ts';
import { explainModelViolation } from '../src/testing/model.ts';
const one = (r: number, c: number) => defineSaga({ name: 'one', version: 1, steps: { a: { worker: 'w', retries: r } }, compensation: { retries: c } });
const r = exploreProduct(one, { hosts: 1, stepRetries: 0, compensationRetries: 0, duplicates: 0, drops: 0, operatorRetries: 0, operatorResolves: 2 });
console.log(r.states, r.violations.map(explainModelViolation).join('\n'));
