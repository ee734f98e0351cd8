; The two-solenoid cycle of the tutorial in "Solenoid Cycle Definitions v3.0" (1992):
; a four-second cycle at a resolution of 1/4 second.
;   A is open for 1.5 s, closed for 2 s, then reopens;
;   B opens 1/4 s before A closes and stays open for 3/4 s.
solenoid A 22 23 14
solenoid B 24 25 15

resolution = 1/4

mode 0 {
  A: OOOO:OO__:____:__OO
  B: ____:_OOO:____:____
}
