#!/usr/bin/env tarantool
-- The Tarantool peer of the networked benchmark (bench/peers.py, issue 9).
--
--   tarantool tarantool_server.lua PORT WORK_DIR ACCOUNTS BALANCE
--
-- A memtx space `account` {id unsigned (primary key), balance integer} holding accounts
-- 1..ACCOUNTS with BALANCE each, the WAL written and fsync'd at every commit (wal_mode 'fsync':
-- the WAL thread writes the transactions that are waiting as one batch, then fsyncs), and
-- transfer(from, to, amount) as a Lua function: the logic of examples/transfer/transfer.c in one
-- box.atomic transaction.  A call's answer goes out once its transaction is in the fsync'd WAL.
-- noop(from, to, amount) answers at once and writes nothing: the ceiling of the net.box load
-- generator.  Listens on 127.0.0.1:PORT only once the accounts exist.
local port, work_dir, accounts, balance = tonumber(arg[1]), arg[2], tonumber(arg[3]), tonumber64(arg[4])
if port == nil or work_dir == nil or accounts == nil or balance == nil then
    io.stderr:write('usage: tarantool tarantool_server.lua PORT WORK_DIR ACCOUNTS BALANCE\n')
    os.exit(2)
end

box.cfg{
    work_dir = work_dir,
    wal_mode = 'fsync',
    memtx_memory = 256 * 1024 * 1024,
    checkpoint_interval = 0,        -- no snapshot during a run (stdb's comes every 100,000 commits)
    log_level = 5,
}

box.once('accounts', function()
    local s = box.schema.space.create('account', {engine = 'memtx'})
    s:format({{name = 'id', type = 'unsigned'}, {name = 'balance', type = 'integer'}})
    s:create_index('primary', {type = 'tree', parts = {'id'}})
    for start = 1, accounts, 1000 do
        box.begin()
        for id = start, math.min(accounts, start + 999) do
            s:insert({id, balance})
        end
        box.commit()
    end
end)

local account = box.space.account

-- Raises an error (the caller gets it; the transaction is rolled back) where transfer.c returns one.
function transfer(from, to, amount)
    if amount <= 0 then
        error('amount must be positive')
    end
    box.atomic(function()
        local a, b = account:get(from), account:get(to)
        if a == nil or b == nil then
            error('no such account')
        end
        if a[2] < amount then
            error('insufficient funds')
        end
        if from == to then
            return
        end
        account:update(from, {{'-', 2, amount}})
        account:update(to, {{'+', 2, amount}})
    end)
    return true
end

function noop(from, to, amount) -- luacheck: no unused args
    return true
end

box.schema.user.grant('guest', 'read,write,execute', 'universe', nil, {if_not_exists = true})
box.cfg{listen = '127.0.0.1:' .. port}
