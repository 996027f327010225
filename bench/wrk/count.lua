-- wrk script: stop after N responses (the first argument after --, default 10000), e.g. N
-- requests each over a new connection:
--   wrk -t1 -c64 -d60s -H 'Connection: close' -s bench/wrk/count.lua http://127.0.0.1:8080/2k -- 10000
-- (the server closes after each answer, wrk connects again). Reports like report.lua.
-- When N responses have come, the thread stops and "BENCHCOUNT done" is written to stderr:
-- wrk itself still waits out -d (its main thread sleeps), so bench/run sends it SIGINT on
-- that line, and wrk reports at once. Defining response() makes wrk hand every response to
-- Lua: slower than report.lua's fast path.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local limit, seen = 10000, 0
function init(args)
   limit = tonumber(args[1]) or limit
end

function response(status, headers, body)
   seen = seen + 1
   if seen == limit then
      wrk.thread:stop()
      io.stderr:write("BENCHCOUNT done\n")
   end
end
