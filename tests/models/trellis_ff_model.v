// Behavioural model of the ECP5 TRELLIS_FF flip-flop, for simulating the index SRAM's ECP5
// form with Icarus Verilog. It covers what hdl/index_sram.py instantiates: a rising-edge
// register with the clock enable tied high, the set/reset input tied low and a power-up
// value of 0 (REGSET = "RESET").
module TRELLIS_FF (input CLK, input LSR, input CE, input DI, input M, output reg Q);
  parameter GSR = "ENABLED";
  parameter CEMUX = "1";
  parameter CLKMUX = "CLK";
  parameter LSRMUX = "LSR";
  parameter REGSET = "RESET";
  parameter SRMODE = "LSR_OVER_CE";
  initial Q = 1'b0;
  always @(posedge CLK) Q <= DI;
endmodule
