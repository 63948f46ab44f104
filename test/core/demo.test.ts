import { describe, expect, it } from 'vitest';
import { runScenario } from '../../examples/trip-booking.ts';

describe('the trip-booking demo', () => {
  it('commits all three reservations when everything succeeds', async () => {
    const r = await runScenario('ok', 'ok');
    expect(r.outcome.status).toBe('committed');
    expect(r.held).toEqual({ flights: 1, hotels: 1, cars: 1 });
    expect(r.report).toMatch(/airline holds: AI-1 \(LIS -> OSL\)/);
  });

  it('cancels flight and car when the hotel is full', async () => {
    const r = await runScenario('fails', 'fails');
    expect(r.outcome).toMatchObject({ status: 'compensated', compensated: ['flight', 'car'], failures: [{ stepId: 'hotel', reason: 'failed' }] });
    expect(r.held).toEqual({ flights: 0, hotels: 0, cars: 0 });
  });

  it('undoes a hotel that answers after its timeout, late success included', async () => {
    const r = await runScenario('slow', 'slow');
    expect(r.outcome).toMatchObject({ status: 'compensated', compensated: ['flight', 'hotel', 'car'], failures: [{ stepId: 'hotel', reason: 'timed-out' }] });
    expect(r.held).toEqual({ flights: 0, hotels: 0, cars: 0 });
  });
});
