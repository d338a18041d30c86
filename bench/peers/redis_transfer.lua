-- The Redis peer's transfer (bench/peers.py, issue 9): examples/transfer/transfer.c's logic as a
-- Redis script, loaded with SCRIPT LOAD and called with
--     EVALSHA <sha> 2 <from key> <to key> <amount>
-- Each account is a string key holding its balance (an integer).  A script runs atomically; on an
-- error reply it has written nothing (every check comes before the first write).
local amount = tonumber(ARGV[1])
if amount == nil or amount <= 0 then
    return redis.error_reply('amount must be positive')
end
local from, to = tonumber(redis.call('GET', KEYS[1])), tonumber(redis.call('GET', KEYS[2]))
if from == nil or to == nil then
    return redis.error_reply('no such account')
end
if from < amount then
    return redis.error_reply('insufficient funds')
end
if KEYS[1] == KEYS[2] then
    return 1
end
redis.call('DECRBY', KEYS[1], amount)
redis.call('INCRBY', KEYS[2], amount)
return 1
