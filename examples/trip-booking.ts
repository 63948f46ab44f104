/**
 * The trip-booking demo: a flight, a hotel and a car reserved in parallel against
 * three fake systems of record, on the embedded runtime (no server needed).
 *
 *   npm start
 *
 * Three scenarios: everything succeeds; the hotel fails, so flight and car are
 * cancelled; the hotel answers too late, so it is treated as in doubt, and its late
 * success is undone too. After each, what every system of record holds. The demo's code
 * is src/demo/trip.ts (the installed package runs it as `npx scatter-saga demo`).
 */
import { pathToFileURL } from 'node:url';
import { main } from '../src/demo/trip.ts';

export { buildTrip, main, runScenario } from '../src/demo/trip.ts';
export type { HotelBehaviour, ScenarioResult, Trip } from '../src/demo/trip.ts';

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await main();
}
