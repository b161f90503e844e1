'use strict';
// Regenerates src/mysql_redis_cache/_node/tznames.json, the long time-zone names that
// JS Date.prototype.toString() prints: {zone: [standard name, daylight name]}.
// The zone list comes on stdin (one IANA name a line), e.g.:
//   python -c "import zoneinfo; print('\n'.join(sorted(zoneinfo.available_timezones())))" \
//     | node interop/gen_tznames.js > src/mysql_redis_cache/_node/tznames.json
const zones = require('fs').readFileSync(0, 'utf8').split('\n').filter(Boolean);
const out = {};
for (const zone of zones) {
  let fmt;
  try {
    fmt = new Intl.DateTimeFormat('en-US', { timeZone: zone, timeZoneName: 'long' });
  } catch {
    continue;
  }
  const nameAt = (d) => fmt.formatToParts(d).find((p) => p.type === 'timeZoneName').value;
  const offsetAt = (d) => {
    const parts = new Intl.DateTimeFormat('en-US', { timeZone: zone, hourCycle: 'h23',
      year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric' })
      .formatToParts(d).reduce((acc, p) => ({ ...acc, [p.type]: Number(p.value) }), {});
    return (Date.UTC(parts.year, parts.month - 1, parts.day, parts.hour, parts.minute) - d) / 60000;
  };
  const jan = new Date(Date.UTC(2026, 0, 15, 12));
  const jul = new Date(Date.UTC(2026, 6, 15, 12));
  const [std, dst] = offsetAt(jan) <= offsetAt(jul) ? [jan, jul] : [jul, jan];
  out[zone] = [nameAt(std), nameAt(dst)];
}
process.stdout.write(JSON.stringify(out));
