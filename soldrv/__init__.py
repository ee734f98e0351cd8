"""Harvard solenoid cycles: solfmt compiler (.sol -> .sft), soldrv runner and a Bluesky flyer."""
