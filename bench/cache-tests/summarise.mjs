// Not part of the suite: summarises a CLI results JSON with the suite's own determineTestResult().
import fs from 'fs'
import tests from './tests/index.mjs'
import { determineTestResult, resultTypes } from './test-engine/lib/results.mjs'

const file = process.argv[2]
const results = JSON.parse(fs.readFileSync(file, 'utf8'))
const names = Object.fromEntries(Object.entries(resultTypes).map(([k, v]) => [v[2], k]))
const counts = {}
const byKind = {}
const bySuite = []
const lines = []
for (const suite of tests) {
  const sc = {}
  for (const test of suite.tests) {
    if (!(test.id in results)) continue
    const kind = test.kind || 'required'
    const r = names[determineTestResult(tests, test.id, results, true)[2]]
    const rNoDep = names[determineTestResult(tests, test.id, results, false)[2]]
    counts[r] = (counts[r] || 0) + 1
    byKind[kind] = byKind[kind] || {}
    byKind[kind][r] = (byKind[kind][r] || 0) + 1
    sc[r] = (sc[r] || 0) + 1
    if (!['pass', 'yes'].includes(r)) {
      const raw = results[test.id]
      const msg = raw === true ? '(own assertions passed)' : `${raw[0]}: ${raw[1]}`
      lines.push(`${suite.id}\t${test.id}\t${kind}\t${r}${r === 'dependency_fail' ? ' (own: ' + rNoDep + ')' : ''}\t${msg}`)
    }
  }
  bySuite.push([suite.id, sc])
}
console.log('file:', file, ' tests run:', Object.keys(results).length)
console.log('overall (dependencies honoured, as on cache-tests.fyi):', JSON.stringify(counts))
for (const [k, v] of Object.entries(byKind)) console.log(`  kind=${k}:`, JSON.stringify(v))
const scored = Object.entries(byKind).filter(([k]) => k !== 'check')
const scoredTotal = scored.reduce((a, [, v]) => a + Object.values(v).reduce((x, y) => x + y, 0), 0)
const scoredPass = scored.reduce((a, [, v]) => a + (v.pass || 0), 0)
console.log(`scored (required+optimal) passed: ${scoredPass} / ${scoredTotal}`)
const reqTotal = Object.values(byKind.required || {}).reduce((x, y) => x + y, 0)
console.log(`required passed: ${(byKind.required || {}).pass || 0} / ${reqTotal};  optimal passed: ${(byKind.optimal || {}).pass || 0} / ${Object.values(byKind.optimal || {}).reduce((x, y) => x + y, 0)};  check yes: ${(byKind.check || {}).yes || 0} / ${Object.values(byKind.check || {}).reduce((x, y) => x + y, 0)}`)
console.log('\nper suite:')
for (const [s, c] of bySuite) console.log(`  ${s}: ${JSON.stringify(c)}`)
console.log('\nnot passing (suite, id, kind, result, message):')
for (const l of lines) console.log(l)
