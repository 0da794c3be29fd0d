-- wrk script for bench/api_load.sh: GET /usage/{msisdn} for random stored
-- subscribers, over their whole history, with Basic credentials.
-- Env: MSISDNS (file, one per line), AUTH (base64 user:password),
--      RATE (total requests/s to pace to; 0 = as fast as possible), CONNECTIONS.
local msisdns = {}
local pause_ms = 0

function init(args)
  for line in io.lines(os.getenv("MSISDNS")) do
    msisdns[#msisdns + 1] = line
  end
  wrk.headers["Authorization"] = "Basic " .. os.getenv("AUTH")
  local rate = tonumber(os.getenv("RATE") or "0")
  if rate > 0 then
    -- Each connection waits this long before each request: together they offer RATE.
    pause_ms = tonumber(os.getenv("CONNECTIONS")) * 1000 / rate
  end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

function delay()
  return pause_ms
end

function request()
  local msisdn = msisdns[math.random(#msisdns)]
  return wrk.format("GET", "/usage/" .. msisdn)
end

function done(summary, latency, requests)
  local non2xx = summary.errors.status
  io.write(string.format("requests %d, %.0f req/s, non-2xx %d, p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms\n",
    summary.requests, summary.requests / (summary.duration / 1e6), non2xx,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
