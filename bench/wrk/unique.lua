-- wrk script: every request asks for a new URL, so every request is a cache miss.
--   wrk -t1 -c32 -d10s -s bench/wrk/unique.lua http://127.0.0.1:8080 -- /slow/run1-
-- requests /slow/run1-1-1, /slow/run1-1-2, ... (prefix, wrk thread number, counter).
-- Headers given with -H (e.g. a Cookie) are kept. Reports like report.lua.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local threads = 0
function setup(thread)
   threads = threads + 1
   thread:set("thread_number", threads)
end

local prefix, counter = "/u/", 0
function init(args)
   prefix = args[1] or prefix
   prefix = prefix .. tostring(thread_number or 1) .. "-"
end

function request()
   counter = counter + 1
   return wrk.format(nil, prefix .. counter)
end
