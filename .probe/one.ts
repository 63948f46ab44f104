import { defineSaga } from '../src/define.ts';
import { exploreProduct } from '../src/testing/key-model.ts';
import { explainModelViolation } from '../src/testing/model.ts';
const one = (r: number, c: number) => defineSaga({ name: 'one', version: 1, steps: { a: { worker: 'w', retries: r } }, compensation: { retries: c } });
const o = JSON.parse(process.argv[2]);
const t = Date.now();
const r = exploreProduct(one, { maxStates: 3_000_000, ...o });
console.log(r.shape, r.states, r.exhaustive, JSON.stringify(r.coverage), Date.now() - t, 'ms');
for (const v of r.violations) console.log(explainModelViolation(v));
