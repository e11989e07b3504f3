-- The fleet's shared limiter, one script so that every command sees the same rules.
-- Time is Redis' own (TIME), in microseconds; members never send their clocks.
-- KEYS: 1 state (hash), 2 slots (zset: token -> lease end), 3 credits (zset: token -> lease
--       end), 4 admitted (zset: token of a success -> when it was sent)
-- ARGV: 1 command (reserve | confirm | settle | renew | hold), 2 the member's settings (JSON),
--       then the command's.
local state, slots, credits, admitted = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local command, cfg = ARGV[1], cjson.decode(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local learning = cfg.fixed == 0 and cfg.adaptive

local function number(field, default)
  return tonumber(redis.call('HGET', state, field)) or default
end

local function micros(value)  -- 16 digits: tostring() would keep 14 of them
  return string.format('%.0f', value)
end

local function put(field, value)
  redis.call('HSET', state, field, micros(value))
end

-- Seconds from a cut back to the plateau, as RateController._recovery computes them.
local function recovery(ceiling)
  local slow = math.max(ceiling, 1)
  return math.max(cfg.recovery_seconds, cfg.recovery_requests / ceiling,
                  cfg.slow_recovery / (slow * slow))
end

-- The requests per second in force (0: not paced), as RateController.rate computes it.
local function rate_at(t)
  if cfg.fixed > 0 then return cfg.fixed end
  local ceiling = number('ceiling', nil)
  if not cfg.adaptive or not ceiling then return 0 end
  local k = recovery(ceiling)
  local since = (t - number('cut_at', 0)) / 1e6 - k
  local cubic
  if since <= 0 then
    local x = since / k
    cubic = math.max(cfg.min_rate, ceiling * (cfg.plateau + (cfg.plateau - cfg.beta) * x * x * x))
  else
    local x = since / math.min(k, cfg.probe_seconds)
    cubic = ceiling * (cfg.plateau + (1 - cfg.beta) * cfg.probe_gain * x * x * x)
  end
  local server = number('server_rate', nil)
  if server and number('epoch', 0) > 0 then return math.min(server, cubic) end
  return server or cubic
end

-- Successes per second lately (0: none), as RateController.accepted_rate computes it; each
-- success counts at the moment its request was sent.
local function accepted_rate()
  local first = number('first_success', nil)
  if not first then return 0 end
  local ceiling = number('ceiling', nil)
  local span = cfg.memory
  if ceiling then span = math.min(cfg.memory, math.max(1, recovery(ceiling) / 2)) end
  local count = redis.call('ZCOUNT', admitted, '(' .. micros(now - span * 1e6), '+inf')
  local elapsed = (now - first) / 1e6
  if elapsed < span then return count / (elapsed + 1) end
  return count / span
end

-- The server admitted every request sent within a window before the one it refused that was
-- answered with success, even those answered after the cut: so many per window is a floor
-- under the limit (in slow start, half of what was sent).
local function admitted_before_cut()
  local refused = number('refused_at', nil)
  if not refused then return end
  local window = cfg.window * 1e6
  local count = redis.call('ZCOUNT', admitted, '(' .. micros(refused - window), micros(refused))
  local ceiling = number('ceiling', 0)
  if count / cfg.window > ceiling then redis.call('HSET', state, 'ceiling', count / cfg.window) end
end

local function slot_cap()
  local cap = cfg.max_slots > 0 and cfg.max_slots or math.huge
  if learning and not number('ceiling', nil) then cap = math.min(cap, number('window', 1)) end
  return cap
end

local function hold(wait)  -- every member starts nothing for `wait` µs
  if wait <= 0 or wait > cfg.max_hold then return end
  if now + wait <= number('hold', 0) then return end  -- inside a hold written and announced
  put('hold', now + wait)
  put('tat', math.max(number('tat', 0), now + wait))  -- after the hold, starts stay spaced
  -- News only when the hold grows: a burst of 429s inside one hold would otherwise wake every
  -- sleeper of every member once per 429 (the news is a hint; `confirm` is the guarantee).
  redis.call('PUBLISH', cfg.channel, 'hold ' .. micros(wait))
end

local function reserve(token)
  local stop = number('stop', 0)
  if stop > now then
    return {1, stop - now, redis.call('HGET', state, 'stop_status'),
            redis.call('HGET', state, 'stop_message')}
  end
  local cap = slot_cap()
  if cap < math.huge then
    redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
    if redis.call('ZCARD', slots) >= cap then
      local first = redis.call('ZRANGE', slots, 0, 0, 'WITHSCORES')
      return {2, tonumber(first[2]) - now}
    end
  end
  if cfg.max_credits >= 0 then
    -- A lease that ran out belongs to a member that died mid-request: count it as spent.
    local expired = redis.call('ZREMRANGEBYSCORE', credits, '-inf', now)
    if expired > 0 then redis.call('HINCRBY', state, 'spent', expired) end
    local spent, open = number('spent', 0), redis.call('ZCARD', credits)
    if spent + open + 1 > cfg.max_credits then
      if open == 0 then return {4, spent, cfg.max_credits} end
      local first = redis.call('ZRANGE', credits, 0, 0, 'WITHSCORES')
      return {3, tonumber(first[2]) - now}
    end
  end
  local rate = rate_at(now)
  local interval = rate > 0 and 1e6 / rate or 0
  local start = math.max(now, number('tat', 0), number('hold', 0))
  put('tat', start + interval)
  if cap < math.huge then redis.call('ZADD', slots, micros(start + cfg.lease), token) end
  if cfg.max_credits >= 0 then redis.call('ZADD', credits, micros(start + cfg.lease), token) end
  return {0, start - now, number('epoch', 0), micros(start), tostring(rate),
          tostring(number('ceiling', 0))}
end

local function succeeded(token, sent_at)
  redis.call('ZADD', admitted, micros(sent_at), token)
  redis.call('ZREMRANGEBYSCORE', admitted, '-inf', micros(now - cfg.memory * 1e6))
  if not number('first_success', nil) then put('first_success', now) end
  local ceiling = number('ceiling', nil)
  if not learning then return end
  if not ceiling then
    redis.call('HSET', state, 'window', tostring(number('window', 1) + cfg.window_growth))
    return
  end
  if now - number('cut_at', 0) < recovery(ceiling) * 1e6 then
    -- Answers still coming back from before a cut show the server accepted more than was
    -- counted when it cut: the ceiling moves up.
    local accepted = accepted_rate()
    if accepted * cfg.beta > ceiling then redis.call('HSET', state, 'ceiling', accepted) end
    admitted_before_cut()
  end
end

local function throttled(epoch, sent_at, wait)
  local shared_epoch, cut_at = number('epoch', 0), number('cut_at', 0)
  -- One cut per congestion event: a 429 to a request sent before the last cut (or within a
  -- window after it) says nothing new.
  if learning and epoch == shared_epoch
      and not (shared_epoch > 0 and sent_at < cut_at + cfg.window * 1e6) then
    local known, sum = 0, 0
    for _, rate in ipairs({rate_at(now), accepted_rate()}) do
      if rate > 0 then known, sum = known + 1, sum + rate end
    end
    local base = known > 0 and sum / known or 1
    redis.call('HSET', state, 'ceiling', math.max(cfg.min_rate / cfg.beta, base))
    put('refused_at', sent_at)
    admitted_before_cut()
    put('cut_at', now)
    redis.call('HINCRBY', state, 'epoch', 1)
    -- Starts reserved ahead at the old rate are void: their callers reserve afresh, spaced
    -- at the new rate from now (as the in-process limiter computes each start after its sleep).
    put('tat', math.max(now, number('hold', 0)))
    redis.call('PUBLISH', cfg.channel, 'cut 0')
  end
  -- The server's wait is for the key, so for every member: each 429's Retry-After holds them
  -- all (members cannot see each other's requests; none may start inside a wait it was told).
  if wait >= 0 then hold(wait) end
end

local function stop(wait, status, message)
  local until_ = math.max(number('stop', 0), now + wait)
  put('stop', until_)
  redis.call('HSET', state, 'stop_status', status, 'stop_message', message)
  redis.call('PUBLISH', cfg.channel, 'stop ' .. micros(until_ - now))
end

local function release(token, charged)
  -- Whoever waits for a slot or a credit may go now.
  local freed = redis.call('ZREM', slots, token)
  if redis.call('ZREM', credits, token) == 1 then
    if charged then redis.call('HINCRBY', state, 'spent', 1) end
    freed = 1
  end
  if freed == 1 and (slot_cap() < math.huge or cfg.max_credits >= 0) then
    redis.call('PUBLISH', cfg.channel, 'free')
  end
end

-- settle: token, outcome (ok | throttled | other | none), charged (1/0), epoch, sent at (µs),
-- Retry-After (µs, -1: none), stated rate (0: none), quota back in (µs, -1), stop for (µs, -1),
-- stop status, stop message
local function settle(a)
  local outcome, epoch, sent_at = a[2], tonumber(a[4]), tonumber(a[5])
  local told, exhausted, stop_for = tonumber(a[7]), tonumber(a[8]), tonumber(a[9])
  if told > 0 and learning then
    redis.call('HSET', state, 'server_rate', told)
    if not number('ceiling', nil) then redis.call('HSET', state, 'ceiling', told) end
  end
  if exhausted > 0 then hold(exhausted) end
  if outcome == 'ok' then succeeded(a[1], sent_at)
  elseif outcome == 'throttled' then throttled(epoch, sent_at, tonumber(a[6])) end
  if stop_for > 0 then stop(stop_for, a[10], a[11]) end
  release(a[1], a[3] == '1')
  return 1
end

local function renew(tokens)
  for _, token in ipairs(tokens) do
    redis.call('ZADD', slots, 'XX', micros(now + cfg.lease), token)
    redis.call('ZADD', credits, 'XX', micros(now + cfg.lease), token)
  end
  return 1
end

-- confirm: token, epoch of its reservation. A member asleep until its reserved start asks
-- before it starts: a hold-off, a stop or a cut written since it reserved voids the
-- reservation (news by pub/sub may come too late), which is given back here; else it starts.
local function confirm(token, epoch)
  local stopped, held = number('stop', 0), number('hold', 0)
  if stopped <= now and held <= now and number('epoch', 0) == epoch then return {0} end
  release(token, false)
  if stopped > now then
    return {1, stopped - now, redis.call('HGET', state, 'stop_status'),
            redis.call('HGET', state, 'stop_message')}
  end
  return {5, math.max(0, held - now)}
end

local args = {unpack(ARGV, 3)}
if command == 'reserve' then return reserve(args[1]) end
if command == 'confirm' then return confirm(args[1], tonumber(args[2])) end
if command == 'settle' then return settle(args) end
if command == 'renew' then return renew(args) end
if command == 'hold' then hold(tonumber(args[1])); return 1 end
return redis.error_reply('unknown command ' .. command)
