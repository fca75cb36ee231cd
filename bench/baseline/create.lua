-- redis-lua baseline: wrap an envelope (包), idempotent per (sender, key).
-- KEYS[1] the idempotency key "hbbench:idem:<sender>:<key>",
-- KEYS[2] the id counter "hbbench:next_id".
-- ARGV: env key prefix, sender, group, greeting, kind (1 random, 2 equal),
--       total_fen, count.
-- Returns the envelope id.
local id = redis.call('GET', KEYS[1])
if id then
  return tonumber(id)
end
id = redis.call('INCR', KEYS[2])
redis.call('HSET', ARGV[1] .. id,
  'sender', ARGV[2], 'group', ARGV[3], 'greeting', ARGV[4], 'kind', ARGV[5],
  'status', 1, 'total_fen', ARGV[6], 'count', ARGV[7],
  'remaining_fen', ARGV[6], 'remaining_count', ARGV[7])
redis.call('SET', KEYS[1], id)
return id
