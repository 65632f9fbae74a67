-- wrk script: client-credentials token requests with HTTP Basic auth.
-- wrk itself reports "Non-2xx or 3xx responses: N" when any request failed;
-- a run without that line had every answer 200.
--
--   KEYGATE_BASIC=$(printf '%s:%s' "$CLIENT_ID" "$CLIENT_SECRET" | base64 -w0) \
--     wrk -t2 -c64 -d10s --latency -s scripts/wrk-token.lua http://127.0.0.1:8080/oauth/token
wrk.method = "POST"
wrk.body = "grant_type=client_credentials"
-- KEYGATE_RESOURCE, when set, is sent as the RFC 8707 resource parameter.
local resource = os.getenv("KEYGATE_RESOURCE")
if resource ~= nil and resource ~= "" then
  wrk.body = wrk.body .. "&resource=" .. resource
end
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. os.getenv("KEYGATE_BASIC")
