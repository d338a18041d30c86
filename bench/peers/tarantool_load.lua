#!/usr/bin/env tarantool
-- The net.box load generator of the Tarantool peer (bench/peers.py, issue 9): a second tarantool
-- process, the counterpart of bench/loadgen/load.js's transfer mode.
--
--   tarantool tarantool_load.lua HOST:PORT CLIENTS SECONDS ACCOUNTS WARMUP FUNCTION [--inflight K] [--zipf ALPHA]
--
-- CLIENTS closed-loop clients, each its own net.box connection driven by K fibers (--inflight,
-- default 1): each fiber calls FUNCTION(from, to, 1), waits for the answer, calls again, so a
-- connection has K calls in flight (net.box multiplexes the fibers' calls on it).  Both accounts
-- are uniform in 1..ACCOUNTS, or with --zipf ALPHA > 0 (default 0) drawn as load.js draws them:
-- P(rank k) proportional to 1 / k^ALPHA, rank k = account k, a precomputed CDF and a binary
-- search, `to` drawn again until it differs from `from`.  After WARMUP seconds prints
-- {"event":"start"}, measures SECONDS seconds, then prints one JSON result line {clients,
-- inflight, zipf, messages, seconds, msg_per_s, p50_us, p99_us, errors, first_errors, loadgen_cpu,
-- account1_share} (loadgen_cpu: this process's CPU time over the window, in cores;
-- account1_share: the share of the measured calls with account 1 at either end).  A call that
-- raises counts as an error.
local net_box = require('net.box')
local fiber = require('fiber')
local clock = require('clock')
local json = require('json')

local USAGE = 'usage: tarantool tarantool_load.lua HOST:PORT CLIENTS SECONDS ACCOUNTS WARMUP FUNCTION ' ..
              '[--inflight K] [--zipf ALPHA]\n'
local uri, clients, seconds = arg[1], tonumber(arg[2]), tonumber(arg[3])
local accounts, warmup, func = tonumber(arg[4]), tonumber(arg[5]), arg[6]
if uri == nil or clients == nil or seconds == nil or accounts == nil or warmup == nil or func == nil then
    io.stderr:write(USAGE)
    os.exit(2)
end
local opt = {inflight = 1, zipf = 0}
local ai = 7
while arg[ai] ~= nil do
    local k = arg[ai]:match('^%-%-(.+)$')
    local v = tonumber(arg[ai + 1])
    if k == nil or opt[k] == nil or v == nil then
        io.stderr:write('tarantool_load.lua: bad option ', arg[ai], '\n', USAGE)
        os.exit(2)
    end
    opt[k] = v
    ai = ai + 2
end
local inflight, alpha = opt.inflight, opt.zipf
if inflight < 1 or inflight % 1 ~= 0 or alpha < 0 or (alpha > 0 and accounts < 2) then
    io.stderr:write('tarantool_load.lua: --inflight must be an integer >= 1, --zipf >= 0 (and then ',
                    'ACCOUNTS >= 2)\n')
    os.exit(2)
end

local function out(obj)
    io.stdout:write(json.encode(obj), '\n')
    io.stdout:flush()
end

local measuring, stopping = false, false
local messages, errors, account1 = 0, 0, 0
local first_errors = {}
local lat = {}
math.randomseed(12345)

-- (from, to) with from ~= to
local pair
if alpha > 0 then
    local cdf, sum = {}, 0
    for k = 1, accounts do
        sum = sum + k ^ -alpha
    end
    local acc = 0
    for k = 1, accounts do
        acc = acc + k ^ -alpha / sum
        cdf[k] = acc
    end
    cdf[accounts] = 1
    local function zipf()          -- the first rank whose cumulative probability reaches u
        local u = math.random()
        local lo, hi = 1, accounts
        while lo < hi do
            local mid = math.floor((lo + hi) / 2)
            if cdf[mid] < u then
                lo = mid + 1
            else
                hi = mid
            end
        end
        return lo
    end
    pair = function()
        local from, to = zipf(), zipf()
        while to == from do
            to = zipf()
        end
        return from, to
    end
else
    pair = function()
        local from = math.random(accounts)
        local to = math.random(accounts)
        if to == from then
            to = to % accounts + 1
        end
        return from, to
    end
end

local conns = {}
for i = 1, clients do
    local c = net_box.connect(uri, {wait_connected = true})
    if not c:is_connected() then
        io.stderr:write('tarantool_load.lua: cannot connect to ', uri, ': ', tostring(c.error), '\n')
        os.exit(1)
    end
    conns[i] = c
end

local fibers = clients * inflight
local done = fiber.channel(fibers)
for n = 1, fibers do
    local ci = (n - 1) % clients + 1       -- the first fiber of every connection starts first
    fiber.create(function()
        local c = conns[ci]
        while not stopping do
            local from, to = pair()
            local t0 = clock.monotonic()
            local ok, err = pcall(c.call, c, func, {from, to, 1})
            if measuring then
                if ok then
                    messages = messages + 1
                    lat[#lat + 1] = (clock.monotonic() - t0) * 1e6
                    if from == 1 or to == 1 then
                        account1 = account1 + 1
                    end
                else
                    errors = errors + 1
                end
            end
            if not ok then
                if #first_errors < 5 then
                    first_errors[#first_errors + 1] = 'client ' .. ci .. ': ' .. tostring(err)
                end
                fiber.sleep(0.001)
            end
        end
        done:put(true)
    end)
end

fiber.sleep(warmup)
messages, errors, account1, lat = 0, 0, 0, {}
measuring = true
local cpu0, t0 = os.clock(), clock.monotonic()
out({event = 'start'})
fiber.sleep(seconds)
measuring = false
local wall, cpu = clock.monotonic() - t0, os.clock() - cpu0
stopping = true
table.sort(lat)
local function pct(q)
    if #lat == 0 then
        return json.NULL
    end
    return lat[math.min(#lat, math.floor(#lat * q) + 1)]
end
out({event = 'result', mode = 'transfer', loadgen = 'net.box', ['function'] = func, clients = clients,
     inflight = inflight, zipf = alpha, messages = messages, seconds = wall, msg_per_s = messages / wall,
     p50_us = pct(0.5), p99_us = pct(0.99), errors = errors, first_errors = first_errors,
     loadgen_cpu = cpu / wall, account1_share = messages > 0 and account1 / messages or json.NULL})
for _ = 1, fibers do
    done:get(10)
end
for _, c in ipairs(conns) do
    c:close()
end
os.exit(0)
