#!/usr/bin/env tarantool
-- The net.box load generator of the Tarantool peer (bench/peers.py, issue 9): a second tarantool
-- process, the counterpart of bench/loadgen/load.js's transfer mode.
--
--   tarantool tarantool_load.lua HOST:PORT CLIENTS SECONDS ACCOUNTS WARMUP FUNCTION
--
-- CLIENTS closed-loop clients, each its own net.box connection driven by its own fiber: call
-- FUNCTION(from, to, 1) between random accounts, wait for the answer, call again.  After WARMUP
-- seconds prints {"event":"start"}, measures SECONDS seconds, then prints one JSON result line
-- {clients, messages, seconds, msg_per_s, p50_us, p99_us, errors, first_errors, loadgen_cpu}
-- (loadgen_cpu: this process's CPU time over the window, in cores).  A call that raises counts as
-- an error.
local net_box = require('net.box')
local fiber = require('fiber')
local clock = require('clock')
local json = require('json')

local uri, clients, seconds = arg[1], tonumber(arg[2]), tonumber(arg[3])
local accounts, warmup, func = tonumber(arg[4]), tonumber(arg[5]), arg[6]
if uri == nil or clients == nil or seconds == nil or accounts == nil or warmup == nil or func == nil then
    io.stderr:write('usage: tarantool tarantool_load.lua HOST:PORT CLIENTS SECONDS ACCOUNTS WARMUP FUNCTION\n')
    os.exit(2)
end

local function out(obj)
    io.stdout:write(json.encode(obj), '\n')
    io.stdout:flush()
end

local measuring, stopping = false, false
local messages, errors = 0, 0
local first_errors = {}
local lat = {}
math.randomseed(12345)

local conns = {}
for i = 1, clients do
    local c = net_box.connect(uri, {wait_connected = true})
    if not c:is_connected() then
        io.stderr:write('tarantool_load.lua: cannot connect to ', uri, ': ', tostring(c.error), '\n')
        os.exit(1)
    end
    conns[i] = c
end

local done = fiber.channel(clients)
for i = 1, clients do
    fiber.create(function()
        local c = conns[i]
        while not stopping do
            local from = math.random(accounts)
            local to = math.random(accounts)
            if to == from then
                to = to % accounts + 1
            end
            local t0 = clock.monotonic()
            local ok, err = pcall(c.call, c, func, {from, to, 1})
            if measuring then
                if ok then
                    messages = messages + 1
                    lat[#lat + 1] = (clock.monotonic() - t0) * 1e6
                else
                    errors = errors + 1
                end
            end
            if not ok then
                if #first_errors < 5 then
                    first_errors[#first_errors + 1] = 'client ' .. i .. ': ' .. tostring(err)
                end
                fiber.sleep(0.001)
            end
        end
        done:put(true)
    end)
end

fiber.sleep(warmup)
messages, errors, lat = 0, 0, {}
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
     messages = messages, seconds = wall, msg_per_s = messages / wall, p50_us = pct(0.5), p99_us = pct(0.99),
     errors = errors, first_errors = first_errors, loadgen_cpu = cpu / wall})
for _ = 1, clients do
    done:get(10)
end
for _, c in ipairs(conns) do
    c:close()
end
os.exit(0)
