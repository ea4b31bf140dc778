#include "go_asm.h"
#include "textflag.h"

// Shared by vnniRows and vnniRowsLegacy. Registers: AX the arguments, SI
// the panel's values, R8–R11 the four tokens' activations, Z0–Z3 a group's
// integer sums per token, Z8 the values, Z12 a temporary, Z16–Z19 the float
// sums per token.

// ZERO4 clears four vectors.
#define ZERO4(a, b, c, d) \
	VPXORD a, a, a \
	VPXORD b, b, b \
	VPXORD c, c, c \
	VPXORD d, d, d

// START loads the values and the four tokens' activations (p.x, p.xStride
// bytes apart) and clears the float sums.
#define START \
	MOVQ p+8(FP), AX \
	MOVQ vnniArgs_vals(AX), SI \
	MOVQ vnniArgs_x(AX), R8 \
	MOVQ vnniArgs_xStride(AX), R12 \
	LEAQ (R8)(R12*1), R9 \
	LEAQ (R8)(R12*2), R10 \
	LEAQ (R9)(R12*2), R11 \
	ZERO4(Z16, Z17, Z18, Z19)

// DOT4 adds four values of 16 rows times four activation bytes of each
// token to Z0–Z3 and moves on to the next four.
#define DOT4 \
	VMOVDQU32 (SI), Z8 \
	VPDPBUSD.BCST (R8), Z8, Z0 \
	VPDPBUSD.BCST (R9), Z8, Z1 \
	VPDPBUSD.BCST (R10), Z8, Z2 \
	VPDPBUSD.BCST (R11), Z8, Z3 \
	ADDQ $64, SI \
	ADDQ $4, R8 \
	ADDQ $4, R9 \
	ADDQ $4, R10 \
	ADDQ $4, R11

// SCALED adds the integer sums s times the rows' scales Z11 times one
// token's activation scale (at addr) to that token's float sum acc.
#define SCALED(s, addr, acc) \
	VCVTDQ2PS   s, s \
	VMULPS.BCST addr, Z11, Z12 \
	VFMADD231PS Z12, s, acc

// COEF adds the coefficients Z10 times one token's activation sum (at
// addr) to that token's float sum acc.
#define COEF(addr, acc) VFMADD231PS.BCST addr, Z10, acc

// FINISH stores the float sums into f.
#define FINISH \
	MOVQ    f+0(FP), DI \
	VMOVUPS Z16, 0(DI) \
	VMOVUPS Z17, 64(DI) \
	VMOVUPS Z18, 128(DI) \
	VMOVUPS Z19, 192(DI) \
	VZEROUPPER \
	RET

// func vnniRows(f *[4][16]float32, p *vnniArgs)
//
// Four tokens times a 16-row panel over p.blocks blocks (vnni_amd64.go);
// p.sum and p.xd advance with the blocks. Besides the shared registers: DX
// the integer scales, R13 the coefficients, R14 the rows' d, BX the tokens'
// group sums and then activation scales, Z4–Z7 a block's scaled integer
// sums, Z9 a group's scales, Z10 its coefficients, Z11 the rows' d.
TEXT ·vnniRows(SB), NOSPLIT, $0-16
	START
	MOVQ vnniArgs_scales(AX), DX
	MOVQ vnniArgs_coef(AX), R13
	MOVQ vnniArgs_d(AX), R14
	MOVQ vnniArgs_blocks(AX), R15

block:
	ZERO4(Z4, Z5, Z6, Z7)
	MOVQ vnniArgs_groups(AX), CX
	MOVQ vnniArgs_sum(AX), BX

group:
	ZERO4(Z0, Z1, Z2, Z3)
	MOVQ vnniArgs_chunks(AX), R12

chunk:
	DOT4
	DECQ R12
	JNZ  chunk

	// The group's scales times its integer sums; its coefficients times
	// each token's sum of the group's activations.
	VMOVDQU32 (DX), Z9
	VPMULLD   Z9, Z0, Z0
	VPMULLD   Z9, Z1, Z1
	VPMULLD   Z9, Z2, Z2
	VPMULLD   Z9, Z3, Z3
	VPADDD    Z0, Z4, Z4
	VPADDD    Z1, Z5, Z5
	VPADDD    Z2, Z6, Z6
	VPADDD    Z3, Z7, Z7
	VMOVUPS   (R13), Z10
	MOVQ      vnniArgs_sumStride(AX), R12
	LEAQ      (BX)(R12*2), DI
	COEF((BX), Z16)
	COEF((BX)(R12*1), Z17)
	COEF((DI), Z18)
	COEF((DI)(R12*1), Z19)
	ADDQ      $4, BX
	ADDQ      $64, DX
	ADDQ      $64, R13
	DECQ      CX
	JNZ       group

	// The block's integer sums times d and each token's activation scale.
	MOVQ    BX, vnniArgs_sum(AX)
	VMOVUPS (R14), Z11
	MOVQ    vnniArgs_xd(AX), BX
	MOVQ    vnniArgs_xdStride(AX), R12
	LEAQ    (BX)(R12*2), DI
	SCALED(Z4, (BX), Z16)
	SCALED(Z5, (BX)(R12*1), Z17)
	SCALED(Z6, (DI), Z18)
	SCALED(Z7, (DI)(R12*1), Z19)
	ADDQ    $4, BX
	MOVQ    BX, vnniArgs_xd(AX)
	ADDQ    $64, R14
	DECQ    R15
	JNZ     block
	FINISH

// func vnniRowsLegacy(f *[4][16]float32, p *vnniArgs)
//
// Four tokens times a 16-row panel of a legacy type over p.groups groups
// of 32 values, each with the rows' own float scale d and coefficient of
// the activations' group sum; p.scales, p.blocks and p.chunks are not used.
// Besides the shared registers: R13 the coefficients, R14 the rows' d, BX
// the tokens' activation scales, DX their group sums (both p.xdStride bytes
// apart per token), Z10 a group's coefficients, Z11 its rows' d.
TEXT ·vnniRowsLegacy(SB), NOSPLIT, $0-16
	START
	MOVQ vnniArgs_coef(AX), R13
	MOVQ vnniArgs_d(AX), R14
	MOVQ vnniArgs_xd(AX), BX
	MOVQ vnniArgs_sum(AX), DX
	MOVQ vnniArgs_xdStride(AX), R12
	MOVQ vnniArgs_groups(AX), CX

lgroup:
	ZERO4(Z0, Z1, Z2, Z3)
	MOVQ $8, R15

lchunk:
	DOT4
	DECQ R15
	JNZ  lchunk

	// The group's integer sums times d and each token's activation scale,
	// and its coefficients times each token's activation sum.
	VMOVUPS (R14), Z11
	VMOVUPS (R13), Z10
	LEAQ    (BX)(R12*2), DI
	LEAQ    (DX)(R12*2), R15
	SCALED(Z0, (BX), Z16)
	COEF((DX), Z16)
	SCALED(Z1, (BX)(R12*1), Z17)
	COEF((DX)(R12*1), Z17)
	SCALED(Z2, (DI), Z18)
	COEF((R15), Z18)
	SCALED(Z3, (DI)(R12*1), Z19)
	COEF((R15)(R12*1), Z19)
	ADDQ    $4, BX
	ADDQ    $4, DX
	ADDQ    $64, R13
	ADDQ    $64, R14
	DECQ    CX
	JNZ     lgroup
	FINISH

// func transpose16(dst, src *byte, srcStride int)
//
// dst[k][r] = src[r][k] for a 16×16 matrix of 32-bit words: src rows
// srcStride bytes apart, dst rows 64 bytes apart. Pairs of rows are
// interleaved by words, then by quad-words, which transposes each 4×4
// block of a 128-bit lane; two shuffles of whole lanes put the blocks in
// place.
TEXT ·transpose16(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ srcStride+16(FP), CX
	VMOVDQU32 (SI), Z0
	ADDQ CX, SI
	VMOVDQU32 (SI), Z1
	ADDQ CX, SI
	VMOVDQU32 (SI), Z2
	ADDQ CX, SI
	VMOVDQU32 (SI), Z3
	ADDQ CX, SI
	VMOVDQU32 (SI), Z4
	ADDQ CX, SI
	VMOVDQU32 (SI), Z5
	ADDQ CX, SI
	VMOVDQU32 (SI), Z6
	ADDQ CX, SI
	VMOVDQU32 (SI), Z7
	ADDQ CX, SI
	VMOVDQU32 (SI), Z8
	ADDQ CX, SI
	VMOVDQU32 (SI), Z9
	ADDQ CX, SI
	VMOVDQU32 (SI), Z10
	ADDQ CX, SI
	VMOVDQU32 (SI), Z11
	ADDQ CX, SI
	VMOVDQU32 (SI), Z12
	ADDQ CX, SI
	VMOVDQU32 (SI), Z13
	ADDQ CX, SI
	VMOVDQU32 (SI), Z14
	ADDQ CX, SI
	VMOVDQU32 (SI), Z15
	VPUNPCKLDQ Z1, Z0, Z16
	VPUNPCKHDQ Z1, Z0, Z17
	VPUNPCKLDQ Z3, Z2, Z18
	VPUNPCKHDQ Z3, Z2, Z19
	VPUNPCKLDQ Z5, Z4, Z20
	VPUNPCKHDQ Z5, Z4, Z21
	VPUNPCKLDQ Z7, Z6, Z22
	VPUNPCKHDQ Z7, Z6, Z23
	VPUNPCKLDQ Z9, Z8, Z24
	VPUNPCKHDQ Z9, Z8, Z25
	VPUNPCKLDQ Z11, Z10, Z26
	VPUNPCKHDQ Z11, Z10, Z27
	VPUNPCKLDQ Z13, Z12, Z28
	VPUNPCKHDQ Z13, Z12, Z29
	VPUNPCKLDQ Z15, Z14, Z30
	VPUNPCKHDQ Z15, Z14, Z31
	VPUNPCKLQDQ Z18, Z16, Z0
	VPUNPCKHQDQ Z18, Z16, Z1
	VPUNPCKLQDQ Z19, Z17, Z2
	VPUNPCKHQDQ Z19, Z17, Z3
	VPUNPCKLQDQ Z22, Z20, Z4
	VPUNPCKHQDQ Z22, Z20, Z5
	VPUNPCKLQDQ Z23, Z21, Z6
	VPUNPCKHQDQ Z23, Z21, Z7
	VPUNPCKLQDQ Z26, Z24, Z8
	VPUNPCKHQDQ Z26, Z24, Z9
	VPUNPCKLQDQ Z27, Z25, Z10
	VPUNPCKHQDQ Z27, Z25, Z11
	VPUNPCKLQDQ Z30, Z28, Z12
	VPUNPCKHQDQ Z30, Z28, Z13
	VPUNPCKLQDQ Z31, Z29, Z14
	VPUNPCKHQDQ Z31, Z29, Z15
	VSHUFI32X4 $0x44, Z4, Z0, Z16
	VSHUFI32X4 $0xEE, Z4, Z0, Z17
	VSHUFI32X4 $0x44, Z12, Z8, Z18
	VSHUFI32X4 $0xEE, Z12, Z8, Z19
	VSHUFI32X4 $0x44, Z5, Z1, Z20
	VSHUFI32X4 $0xEE, Z5, Z1, Z21
	VSHUFI32X4 $0x44, Z13, Z9, Z22
	VSHUFI32X4 $0xEE, Z13, Z9, Z23
	VSHUFI32X4 $0x44, Z6, Z2, Z24
	VSHUFI32X4 $0xEE, Z6, Z2, Z25
	VSHUFI32X4 $0x44, Z14, Z10, Z26
	VSHUFI32X4 $0xEE, Z14, Z10, Z27
	VSHUFI32X4 $0x44, Z7, Z3, Z28
	VSHUFI32X4 $0xEE, Z7, Z3, Z29
	VSHUFI32X4 $0x44, Z15, Z11, Z30
	VSHUFI32X4 $0xEE, Z15, Z11, Z31
	VSHUFI32X4 $0x88, Z18, Z16, Z0
	VSHUFI32X4 $0xDD, Z18, Z16, Z4
	VSHUFI32X4 $0x88, Z19, Z17, Z8
	VSHUFI32X4 $0xDD, Z19, Z17, Z12
	VSHUFI32X4 $0x88, Z22, Z20, Z1
	VSHUFI32X4 $0xDD, Z22, Z20, Z5
	VSHUFI32X4 $0x88, Z23, Z21, Z9
	VSHUFI32X4 $0xDD, Z23, Z21, Z13
	VSHUFI32X4 $0x88, Z26, Z24, Z2
	VSHUFI32X4 $0xDD, Z26, Z24, Z6
	VSHUFI32X4 $0x88, Z27, Z25, Z10
	VSHUFI32X4 $0xDD, Z27, Z25, Z14
	VSHUFI32X4 $0x88, Z30, Z28, Z3
	VSHUFI32X4 $0xDD, Z30, Z28, Z7
	VSHUFI32X4 $0x88, Z31, Z29, Z11
	VSHUFI32X4 $0xDD, Z31, Z29, Z15
	VMOVDQU32 Z0, 0(DI)
	VMOVDQU32 Z1, 64(DI)
	VMOVDQU32 Z2, 128(DI)
	VMOVDQU32 Z3, 192(DI)
	VMOVDQU32 Z4, 256(DI)
	VMOVDQU32 Z5, 320(DI)
	VMOVDQU32 Z6, 384(DI)
	VMOVDQU32 Z7, 448(DI)
	VMOVDQU32 Z8, 512(DI)
	VMOVDQU32 Z9, 576(DI)
	VMOVDQU32 Z10, 640(DI)
	VMOVDQU32 Z11, 704(DI)
	VMOVDQU32 Z12, 768(DI)
	VMOVDQU32 Z13, 832(DI)
	VMOVDQU32 Z14, 896(DI)
	VMOVDQU32 Z15, 960(DI)
	VZEROUPPER
	RET
