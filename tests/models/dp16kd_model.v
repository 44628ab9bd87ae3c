// Behavioural model of the ECP5 DP16KD block RAM, for simulating the index SRAM's ECP5 form
// with Icarus Verilog. It covers what hdl/index_sram.py uses: a write-only port A and a
// read-only port B of the same width (1, 2, 4, 9 or 18 bits), chip selects tied low, and
// port B's output register (REGMODE_B = "OUTREG") or its absence ("NOREG"). A port of width w
// takes its address from AD13..AD0 shifted right by 0, 1, 2, 3 or 4 bits; in the 18-bit mode
// AD1 and AD0 are the byte enables and both must be high for a write.
module DP16KD (
  input DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6, DIA5,
        DIA4, DIA3, DIA2, DIA1, DIA0,
  input ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1, ADA0,
  input CEA, OCEA, CLKA, WEA, RSTA, CSA2, CSA1, CSA0,
  output DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5,
         DOA4, DOA3, DOA2, DOA1, DOA0,
  input DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7, DIB6, DIB5,
        DIB4, DIB3, DIB2, DIB1, DIB0,
  input ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1, ADB0,
  input CEB, OCEB, CLKB, WEB, RSTB, CSB2, CSB1, CSB0,
  output DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6, DOB5,
         DOB4, DOB3, DOB2, DOB1, DOB0
);
  parameter DATA_WIDTH_A = 18;
  parameter DATA_WIDTH_B = 18;
  parameter REGMODE_A = "NOREG";
  parameter REGMODE_B = "NOREG";
  parameter RESETMODE = "SYNC";
  parameter ASYNC_RESET_RELEASE = "SYNC";
  parameter CSDECODE_A = "0b000";
  parameter CSDECODE_B = "0b000";
  parameter WRITEMODE_A = "NORMAL";
  parameter WRITEMODE_B = "NORMAL";
  parameter GSR = "ENABLED";

  localparam SHIFT = DATA_WIDTH_B == 18 ? 4 : DATA_WIDTH_B == 9 ? 3 : DATA_WIDTH_B == 4 ? 2 :
                     DATA_WIDTH_B == 2 ? 1 : 0;

  wire [17:0] dia = {DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7,
                     DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0};
  wire [13:0] ada = {ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3,
                     ADA2, ADA1, ADA0};
  wire [13:0] adb = {ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3,
                     ADB2, ADB1, ADB0};

  reg [17:0] mem [0:16383];
  reg [17:0] latch = 18'h0;
  reg [17:0] out_reg = 18'h0;
  integer i;
  initial for (i = 0; i < 16384; i = i + 1) mem[i] = 18'h0;

  wire byte_enables = DATA_WIDTH_A != 18 || (ADA1 && ADA0);
  always @(posedge CLKA)
    if (CEA && WEA && byte_enables && {CSA2, CSA1, CSA0} == 3'b000)
      mem[ada >> SHIFT] <= dia & ((18'h1 << DATA_WIDTH_A) - 1);

  always @(posedge CLKB)
    if (CEB && {CSB2, CSB1, CSB0} == 3'b000) latch <= mem[adb >> SHIFT];
  always @(posedge CLKB)
    if (OCEB) out_reg <= latch;

  wire [17:0] dob = REGMODE_B == "OUTREG" ? out_reg : latch;
  assign {DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6,
          DOB5, DOB4, DOB3, DOB2, DOB1, DOB0} = dob;
  assign {DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6,
          DOA5, DOA4, DOA3, DOA2, DOA1, DOA0} = 18'h0;
endmodule
