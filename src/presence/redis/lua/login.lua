-- Login or restore one session (see admit.lua for KEYS, ARGV and the reply; caps from ARGV[15]).
return admit(KEYS, ARGV, 15)
